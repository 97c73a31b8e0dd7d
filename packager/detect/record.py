"""Record this machine's NVML answer as a fixture: python3 -m packager.detect.record > card.json"""
from __future__ import annotations

import json
import sys

from packager.detect.nvml import record, system_nvml


def main() -> int:
    real = system_nvml()
    if real is None:
        print("nvidia-ml-py is not installed: pip install nvidia-ml-py", file=sys.stderr)
        return 2
    try:
        answer = record(real)
    except Exception as exc:  # pynvml.NVMLError: no driver, no device
        print(f"NVML did not answer: {exc}", file=sys.stderr)
        return 1
    json.dump(answer, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
