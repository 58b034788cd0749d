"""Train: build a training configuration (data, bands, model, loss, sampling), run it, follow it per batch, compare the result."""

import streamlit as st

from app import services, training
from app.navigation import page
from app.state import get_state
from core.errors import LulcError

NEXT_RUN = "train_next_run"  # the run folder the next Start writes to (uploads are saved there first)
SCRATCH = "none (train from scratch)"

state = get_state()
st.title("Train")
st.caption("Runs `python -m trainer fit` in a separate process; the bundle it writes appears on the Explore and Models pages.")

owner = training.owner_key(state, st.context.cookies)  # the browser (kept across a reload) or this session
if state.job is None:
    state.job = training.reclaim(owner)  # the run this browser started before the page was reloaded
job = state.job
job_status = training.status(job) if job is not None else None
running_here = job_status == "running"
watched = None if running_here else training.live_job()  # another session's run: shown, not stoppable
if watched is not None and job is not None and watched.run_dir == job.run_dir:
    watched = None


def data_choice(config: str, defaults: dict) -> tuple[list[str] | None, str | None, list | None]:
    """The training data widgets; returns (overrides for the data, problem that blocks Start or ``None``, Earth Engine chip centres)."""
    stem = config.rsplit("/", 1)[-1].removesuffix(".yaml")
    options = []
    if defaults["files"]:
        options.append("Files of this configuration")
    options += ["Sample scenes", "Upload image + labels + class file"]
    ee_problems = services.earth_engine_problems()
    if not ee_problems:
        options.append("Earth Engine chips around the current AOI")
    mode = st.radio("Training data", options, horizontal=True, key=f"train_data_{stem}")
    if ee_problems:
        st.caption("Earth Engine chip export is not offered: Earth Engine is not configured here ("
                   + "; ".join(ee_problems) + "). See the README section 'Earth Engine'.")
    if mode == "Files of this configuration":
        for f in defaults["files"]:
            st.caption(f"Image `{f['image']}` · labels `{f['labels']}` · classes `{f['scheme']}`")
        return [], None, None
    if mode == "Sample scenes":
        scenes = services.sample_scenes()
        need = set(defaults["bands"])
        chosen = []
        with st.container(border=True):
            st.caption(f"Sample-pack scenes ({defaults['labels']} labels); a scene without all of the bands cannot be chosen.")
            cols = st.columns(2)
            for i, sc in enumerate(scenes):
                missing = sorted(need - set(sc.bands))
                label = sc.id + (f" (no {', '.join(missing)})" if missing else "")
                on = cols[i % 2].checkbox(label, value=sc.id in defaults["scenes"] and not missing, disabled=bool(missing),
                                          key=f"train_scene_{stem}_{sc.id}")
                if on and not missing:
                    chosen.append(sc.id)
        if not chosen:
            return None, "Tick at least one sample scene to train on.", None
        return training.data_overrides(scenes=training.scene_entries(config, chosen)), None, None
    if mode == "Upload image + labels + class file":
        run = st.session_state.setdefault(NEXT_RUN, training.new_run_name())
        c1, c2, c3 = st.columns(3)
        img = c1.file_uploader("Image GeoTIFF", type=["tif", "tiff"], key="train_image",
                               help=f"bands {', '.join(defaults['bands'])} named in the band descriptions or in the sensor's file order")
        lab = c2.file_uploader("Label GeoTIFF", type=["tif", "tiff"], key="train_labels",
                               help="first band: class ids of the class file; another grid is reprojected (nearest)")
        sch = c3.file_uploader("Class file", type=["json", "csv", "qml"], key="train_scheme",
                               help="lc.json (values, label, palette), a CSV id,name,color, or a QGIS .qml paletted style")
        if img is None or lab is None or sch is None:
            return None, "Upload an image GeoTIFF, its label GeoTIFF and the class file to train on them.", None
        try:
            pair = {"image": training.save_upload(run, "image", img.name, img.getvalue()),
                    "labels": training.save_upload(run, "labels", lab.name, lab.getvalue()),
                    "scheme": training.save_upload(run, "scheme", sch.name, sch.getvalue())}
            training.check_uploads([pair])
        except LulcError as exc:
            return None, str(exc), None
        st.caption(f"Saved for run {run}: `{pair['image']}`, `{pair['labels']}`, `{pair['scheme']}`")
        return training.data_overrides(files=[pair]), None, None
    preview = services.preview_aoi(state)
    if preview is None:
        return None, "Set an AOI on the Explore page first (draw, paste or type it): the chips are exported around it.", None
    if not preview.ok or preview.geojson is None:
        return None, preview.note, None
    points = training.aoi_chip_points(preview.geojson, defaults["chip_size"])
    st.caption(f"{len(points)} chip(s) of {defaults['chip_size']} px from Earth Engine ({state.ee_start} to {state.ee_end}) around "
               f"{services.aoi_origin(state)} ({preview.km2:,.1f} km²), {defaults['labels']} labels; exported when the run starts.")
    return None, None, points


def build_form() -> None:
    """The configuration form, its YAML and the Start button."""
    cfgs = training.configs()
    config = st.selectbox("Configuration", cfgs, key="train_config")
    try:
        defaults = training.config_defaults(config)
    except LulcError as exc:
        st.error(str(exc))
        return
    data_overrides, problem, ee_points = data_choice(config, defaults)
    st.markdown(f"**Sensor and bands**: {defaults['sensor']} — {', '.join(defaults['bands'])} (in network order, from the configuration)")
    c1, c2 = st.columns(2)
    encoders = list(dict.fromkeys([*training.ENCODERS, defaults["encoder"]]))
    encoder = c1.selectbox("Encoder", encoders, index=encoders.index(defaults["encoder"]), key="train_encoder",
                           help="smp U-Net encoder; no pretrained weights are downloaded")
    bundles = services.bundle_paths()
    init = c2.selectbox("Initialise from a bundle", [SCRATCH, *bundles], key="train_init",
                        format_func=lambda p: p if p == SCRATCH else services.bundle_label(p),
                        help="fine-tune a bundle found in models/ or runs/; a new head when the classes differ")
    init_from = "" if init == SCRATCH else init
    if init_from and problem is None:
        problem = training.init_from_problem(init_from, defaults["arch"], encoder, len(defaults["bands"]))
    c1, c2 = st.columns(2)
    loss = c1.selectbox("Loss", ["ce_dice", "focal"], index=["ce_dice", "focal"].index(defaults["loss"]), key="train_loss",
                        help="weighted cross-entropy + Dice, or focal loss (Lin et al. 2017) + Dice")
    sampling = c2.selectbox("Chip sampling", ["uniform", "balanced"], index=["uniform", "balanced"].index(defaults["sampling"]),
                            key="train_sampling", help="balanced: chips centred on pixels of each class")
    c1, c2 = st.columns(2)
    epochs = int(c1.number_input("Epochs", min_value=1, max_value=500, value=5, key="train_epochs"))
    batch = int(c2.number_input("Batch size (chips)", min_value=1, max_value=256, value=int(defaults["batch_size"]), key="train_batch"))
    before = None
    if ee_points:  # the chip export runs first, into the run folder
        run = st.session_state.setdefault(NEXT_RUN, training.new_run_name())
        before, data_overrides = training.earth_engine_steps(run, ee_points, defaults["bands"], state.ee_start, state.ee_end, defaults["labels"])
    overrides = training.page_overrides(loss, sampling, init_from, batch, encoder=encoder) + (data_overrides or [])
    text = None
    if problem is None:
        try:
            text = training.config_yaml(config, epochs, overrides)
        except LulcError as exc:
            problem = str(exc)
    if problem is not None:
        st.warning(problem)
    else:
        with st.expander("Configuration it will run (python -m trainer fit --config this.yaml)"):
            st.code(text, language="yaml")
            st.download_button("Download YAML", text, file_name="train.yaml", mime="text/yaml", key="train_download")
            st.caption("Started here, the run writes to runs/app-<date>-<time>/ and names its bundle by run and date.")
    live = [r for r in training.running_runs() if job is None or r[0] != training.run_label(job)]
    if live:
        st.warning(training.busy_message(live))
    ended = job is not None
    if st.button("Start again" if ended else "Start training", type="primary", disabled=text is None, key="train_start"):
        try:
            run = st.session_state.get(NEXT_RUN) or training.new_run_name()
            new_job = training.launch(config, epochs, run_name=run, overrides=overrides, before=before,
                                      bundle_name=training.card_name(run, config, epochs), owner=owner)
        except LulcError as exc:
            st.error(str(exc))
        else:
            st.session_state.pop(NEXT_RUN, None)
            state.job = new_job
            st.rerun()


def follow(j=None, mine: bool = True) -> None:
    """A run's progress (per batch), chart, messages and, at the end, its card and comparison.

    ``j`` is this session's job (default) or, with ``mine=False``, another session's live run: shown the same way,
    with a Stop button only for an administrator.
    """
    j = get_state().job if j is None else j
    if j is None:
        return
    s = training.status(j)
    if (running_here or not mine) and s != "running":
        st.rerun()  # the run ended: the whole page again, with the form and Start again
    prog = training.read_progress(j.run_dir)
    info = training.run_info(j.run_dir)
    name = info.card_name if info else training.run_label(j)
    st.subheader(f"Run {name}" + ("" if mine else " (started from another session)"))
    st.progress(training.progress_fraction(prog) if s != "finished" else 1.0, text=f"{s} · {training.progress_text(prog)}")
    log = training.progress(j)
    _, val_miou = training.latest(log)
    if val_miou is None and prog and prog.get("val_miou") is not None:
        val_miou = prog["val_miou"]
    if val_miou is not None:
        st.metric("Latest validation mIoU", f"{val_miou:.3f}")
    st.plotly_chart(training.training_figure(log, prog), width="stretch", key=f"train_chart_{training.run_label(j)}")
    with st.expander("Trainer output"):
        st.code(training.log_tail(j) or "(no output yet)")
    if s == "running":
        if not training.can_stop(j, owner, mine=mine):
            st.info(training.STOP_REFUSED)
        elif st.button("Stop training", key="train_stop"):
            try:
                training.stop(j, owner, mine=mine)
            except LulcError as exc:
                st.error(str(exc))
            else:
                st.rerun()
    elif s == "finished":
        finished(j)
    elif s == "stopped":
        if training.has_checkpoint(j):
            st.info("Training was stopped. Its last checkpoint (checkpoints/last.ckpt, end of the last finished epoch) is kept; "
                    f"`{training.resume_command(j)}` continues it.")
        else:
            st.info("Training was stopped before its first epoch ended, so no checkpoint (last.ckpt) was written and there is "
                    "nothing to resume; Start again begins afresh.")
    elif s == "failed":
        reason = training.failure_line(j)
        st.error(f"Training failed: {reason}" if reason else "Training failed; the trainer's last lines:")
        st.code(training.log_tail(j, 20) or "(no output)")


def finished(j) -> None:
    """The finished run: its card in words, the comparison on the test blocks, and Open on Explore."""
    path = str(training.bundle_path(j).resolve())
    st.success(f"Bundle written to {training.run_label(j)}/bundle.")
    try:
        st.markdown("\n".join(f"- {line}" for line in training.card_summary(j)))
    except LulcError as exc:
        st.error(str(exc))
    result = training.comparison(j)
    if result is None:
        st.caption("No comparison on the test blocks was written for this run.")
    elif result.get("error"):
        st.warning(f"No comparison on the test blocks: {result['error']}")
    elif not result.get("groups"):
        st.caption("The run has no held-out test blocks of sample scenes or files to compare on (exported chips are not compared).")
    else:
        st.markdown("**Held-out test blocks: the new bundle beside the bundle it started from and the Dynamic World model**")
        for caption, table, notes in training.comparison_tables(result):
            st.caption(caption)
            st.dataframe(table, hide_index=True)
            for note in notes:
                st.caption(note)
        if any(str(g.get("reference", "")).startswith("dw ") for g in result["groups"]):
            st.caption("Dynamic World labels are a model's output, not ground truth: the Dynamic World model agrees with them by construction.")
    if st.button("Open on Explore", key="train_open", type="primary"):
        state.bundle_path = path
        st.session_state["bundle"] = path
        st.switch_page(page("explore"))


if watched is not None:
    st.fragment(run_every=2.0)(follow)(watched, False)
if not running_here:
    build_form()
(st.fragment(run_every=2.0)(follow) if running_here else follow)()
