"""The evaluation protocols of the reproduction (issue 9), on the MoNuSeg 2018 folder.

- `monuseg`: train = the 30 MoNuSeg train images; test = the 14 MoNuSeg test images.
- `kumar` (the paper's Table 2): train = the 16 Kumar-2017 train images; test = Kumar's 14
  test images (`kumar2017_split` in `manifest.json`; they lie in MoNuSeg's train split).
"""

import json
import pathlib
from typing import List, Tuple

PROTOCOLS = ("monuseg", "kumar")


def protocol_files(data, protocol: str) -> Tuple[List[pathlib.Path], List[Tuple[pathlib.Path,
                                                                                pathlib.Path]]]:
    """(train image paths, [(test image, test labels)]) of `protocol` under `data`."""
    data = pathlib.Path(data)
    if protocol == "monuseg":
        train = sorted((data / "train" / "images").glob("*.png"))
        tests = [(path, data / "test" / "labels" / path.name)
                 for path in sorted((data / "test" / "images").glob("*.png"))]
        return train, tests
    if protocol != "kumar":
        raise ValueError(f"protocol {protocol!r}: expected one of {PROTOCOLS}")
    split = json.loads((data / "manifest.json").read_text())["kumar2017_split"]
    train = [data / "train" / "images" / f"{name}.png" for name in split["train"]]
    tests = [(data / "train" / "images" / f"{name}.png",
              data / "train" / "labels" / f"{name}.png")
             for name in split["test_same"] + split["test_diff"]]
    return train, tests
