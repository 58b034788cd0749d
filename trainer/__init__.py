"""Headless trainer: ``python -m trainer {fit, evaluate, predict}``."""
