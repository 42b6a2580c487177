#!/usr/bin/env python3
"""Cross-check (not calibration) of the MCU cycle model against published MLPerf Tiny latencies.

Published: MLPerf Tiny v0.5, closed division, "Reference" submission on NUCLEO-L4R5ZI
(STM32L4R5, Cortex-M4 at 120 MHz; TensorFlow Lite for Microcontrollers v2.3.1, mbed-os,
GCC 6-2017-q2), median throughput from
mlcommons/tiny_results_v0.5 closed/reference/results/Nucleo-L4R5ZI/<task>/performance/results.txt:
    ic  (resnet8)          1.420 inf/s  -> 704.2 ms
    kws (dscnn)            5.497 inf/s  -> 181.9 ms
    vww (mobilenetv1_025)  1.665 inf/s  -> 600.6 ms
    ad  (fc_autoencoder)  99.487 inf/s  ->  10.05 ms
The system description does not say whether TFLM's CMSIS-NN kernels were linked, so both
runtimes are reported. The zoo models are edgeprune's re-implementations of the MLPerf Tiny
reference architectures (see edgeprune/models/mlperf_tiny.py).

    .venv/bin/python benchmarks/mcu_mlperf_crosscheck.py
writes benchmarks/results/mcu_mlperf_crosscheck.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import command_line, upsert_rows  # noqa: E402

from edgeprune import cost  # noqa: E402
from edgeprune.deploy import Deployment  # noqa: E402
from edgeprune.graph import extract  # noqa: E402
from edgeprune.models import build  # noqa: E402
from edgeprune.targets import load_target  # noqa: E402

PUBLISHED_INF_PER_S = {"resnet8": 1.420, "dscnn": 5.497, "mobilenetv1_025": 1.665,
                       "fc_autoencoder": 99.487}
SOURCE = "mlcommons/tiny_results_v0.5 closed/reference Nucleo-L4R5ZI performance/results.txt"


def main() -> int:
    target = load_target("stm32l4r5-m4")
    rows = []
    for model, ips in PUBLISHED_INF_PER_S.items():
        g = extract(build(model))
        published_ms = 1000.0 / ips
        row = {"model": model, "target": target.name, "published_ms": round(published_ms, 2),
               "published_source": SOURCE, "macs": g.total_macs}
        for runtime in ("tflm-reference", "tflm-cmsis-nn"):
            est = cost.estimate(g, Deployment.for_target(target, runtime=runtime)
                                ).totals["latency_ms"]
            row[f"estimate_ms_{runtime}"] = round(est, 2)
            row[f"ratio_{runtime}"] = round(est / published_ms, 3)
        row["command"] = command_line()
        rows.append(row)
        print(json.dumps(row))
    upsert_rows("mcu_mlperf_crosscheck.json", rows, key=("model", "target"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
