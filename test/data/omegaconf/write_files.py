"""Writes omegaconf-<version>.pt: tiny Lightning-style checkpoints pickled by that omegaconf.

Run with each omegaconf on the path, e.g.
``pip install --no-deps --target /tmp/oc omegaconf==2.1.2 && PYTHONPATH=/tmp/oc python
write_files.py``. test_models_checkpoint_omegaconf.py reads them without omegaconf.
"""

import dataclasses
import enum
import pathlib
from typing import Optional

import omegaconf
import torch
from omegaconf import OmegaConf


class Color(enum.Enum):
    RED = 1
    BLUE = "b"


@dataclasses.dataclass
class Schema:
    color: Color = Color.RED
    steps: Optional[int] = None  # noqa: UP045
    size: int = 3
    rate: float = 1.5
    name: str = "hi"
    flag: bool = True


config = {"a": 1, "b": "${a}", "l": [1, [2, 3], {"z": None}], "m": "???", "e": Color.BLUE}
if tuple(int(x) for x in omegaconf.__version__.split(".")[:2]) >= (2, 2):
    config["p"] = pathlib.PosixPath("x/y")  # PathNode: omegaconf 2.2+
torch.manual_seed(0)
torch.save(
    {
        "state_dict": {"w": torch.arange(3.0)},
        "hyper_parameters": {
            "cfg": OmegaConf.create(config),
            "schema": OmegaConf.structured(Schema),
            "stages": OmegaConf.create([1, {"q": "${a}"}]),
        },
    },
    pathlib.Path(__file__).with_name(f"omegaconf-{omegaconf.__version__}.pt"),
)
