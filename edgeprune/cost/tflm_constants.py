"""Placeholder until `benchmarks/tflm_calibrate.py fit` generates it."""

SOURCE = "benchmarks/tflm_calibrate.py fit <- benchmarks/results/tflm_cycle_calibration.json"
KERNEL_CYCLES = {}
INTERPRETER_CYCLES = {}
FIT = {}
