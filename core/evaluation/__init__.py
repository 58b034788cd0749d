"""Numbers about maps.

- ``metrics``: confusion-matrix metrics (IoU, mIoU, OA, user's/producer's accuracy, F1, kappa, areas).
- ``comparison``: a prediction compared with reference labels across class schemes (crosswalks).
- ``accuracy``: good-practice accuracy and area estimation from a stratified sample (Olofsson et al. 2014).
- ``calibration``: probability calibration (temperature scaling, ECE, reliability).
"""
