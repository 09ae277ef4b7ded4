"""featvis figure SPEC.json: cells rendered in one batch, each image maximizing its own unit."""
import argparse
import json

import numpy as np
import pytest
from PIL import Image

import featvis
from featvis.figures import spec as fs
from featvis.figures.grid import figure_layout

from .test_topk import colour_net

featvis.models.register("colour_net_for_spec_tests", "test model")(lambda weights=None: colour_net())


def spec(**over):
    s = {"model": "colour_net_for_spec_tests", "size": 16, "steps": 40, "seed": 0, "lr": 0.2,
         "rows": [{"title": "red / blue", "cells": ["pool:0", "pool:1"]},
                  {"title": "both", "cells": [None, "pool:0+pool:1"]}],
         "col_titles": ["a", "b"], "captions": True, "figure": {"pad": 2, "dpi": 100}, "out": "fig.png"}
    s.update(over)
    return s


def test_cells_maximize_their_own_units(tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps(spec()))
    args = argparse.Namespace(spec=str(tmp_path / "spec.json"), out=None, steps=None, device=None, quiet=True)
    assert fs.run(args) == 0
    image = np.asarray(Image.open(tmp_path / "fig.png").convert("RGB")).astype(float)
    layout = figure_layout(2, 2, (16, 16), 2, ["red / blue", "both"], ["a", "b"], captions=True)
    assert image.shape[1::-1] == layout.size

    def mean(r, c):
        x, y = layout.cells[r, c]
        return image[y:y + 16, x:x + 16].reshape(-1, 3).mean(0)

    red, blue, blank = mean(0, 0), mean(0, 1), mean(1, 0)
    # each cell's own colour direction wins by a wide margin over the other cell's
    assert (red[0] - red[1]) - (blue[0] - blue[1]) > 40
    assert (blue[2] - blue[0]) - (red[2] - red[0]) > 40
    assert (blank == 255).all()


def test_bad_specs_name_the_problem(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(spec(colums=["x"])))
    with pytest.raises(ValueError, match="unknown key.*colums"):
        fs.load_spec(path)
    with pytest.raises(ValueError, match="cannot read 'pool'"):
        fs.cell_objective("pool", 0)
    obj = fs.cell_objective("-pool:1+pool:2@3,4", 2)
    assert obj.batch_size == 3 and obj.layers == {"pool"}
