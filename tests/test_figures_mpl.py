"""Figures through matplotlib (featvis.figures.mpl): sheets, declared figures and the circuit figure
as PDF/SVG keep their text as text, and the user's rcParams apply."""
import json
import re

import matplotlib
import torch

from featvis.cli import main

from .test_atlas import pdf_text


def test_sheet_svg_and_pdf_have_text_labels(tmp_path, capsys):
    rec = tmp_path / "rec"
    assert main(["render", "toy", "conv2", "--channels", "0:4", "--steps", "2", "--size", "16", "--out", str(rec)]) == 0
    assert main(["sheet", str(rec), "--layer", "conv2", "--out", str(tmp_path / "s.svg")]) == 0
    svg = (tmp_path / "s.svg").read_text()
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert {"0", "1", "2", "3"} <= set(labels) and any(t.startswith("toy conv2: channel") for t in labels)
    assert main(["sheet", str(rec), "--layer", "conv2", "--out", str(tmp_path / "s.pdf")]) == 0
    assert "toy conv2: channel" in pdf_text(tmp_path / "s.pdf")
    capsys.readouterr()
    assert main(["sheet", str(rec), "--layer", "conv2", "--out", str(tmp_path / "s.gif")]) == 2
    assert ".png, .pdf or .svg" in capsys.readouterr().err


def test_circuit_svg_has_a_real_colour_bar(tmp_path):
    out = tmp_path / "c.svg"
    assert main(["circuit", "handcoded", "curves:2", "--from", "edges", "--top", "2", "--steps", "2", "--size", "32",
                 "--out", str(out), "--quiet"]) == 0
    svg = out.read_text()
    assert ">expanded weight</text>" in svg and ">curves:2</text>" in svg
    # the colour bar has numbered ticks (text), and the heatmaps are images beside vector text
    assert len(re.findall(r"<text[^>]*>[−-]?\d", svg)) >= 3 and "<image" in svg
    assert main(["circuit", "handcoded", "curves:2", "--from", "edges", "--top", "2", "--steps", "2", "--size", "32",
                 "--out", str(tmp_path / "c.pdf"), "--quiet"]) == 0
    assert "expanded weight" in pdf_text(tmp_path / "c.pdf")


def test_spec_svg_and_the_users_rcparams(tmp_path):
    spec = {"model": "toy", "size": 16, "steps": 2, "rows": [{"title": "conv2", "cells": ["conv2:0", "conv2:1"]}],
            "col_titles": ["first", "second"], "captions": True, "out": "fig.svg"}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    with matplotlib.rc_context({"font.family": "serif", "font.size": 13}):
        assert main(["figure", str(tmp_path / "spec.json"), "--quiet"]) == 0
    svg = (tmp_path / "fig.svg").read_text()
    assert re.search(r"<text[^>]*font-family:[^;]*[Ss]erif[^>]*>first</text>", svg)
    assert "sans-serif" not in re.search(r"<text[^>]*>first</text>", svg).group()


def test_grid_figure_is_a_figure_to_adjust(tmp_path):
    from featvis.figures.mpl import grid_figure, save
    fig = grid_figure([[torch.rand(3, 8, 8)]], col_titles=["before"])
    fig.axes[0].set_title("after")  # an author's change, after featvis drew it
    save(fig, tmp_path / "g.svg")
    svg = (tmp_path / "g.svg").read_text()
    assert ">after</text>" in svg and ">before</text>" not in svg
    assert b"CreationDate" not in (save(fig, tmp_path / "g.pdf").read_bytes())  # same bytes for the same figure
    first = (tmp_path / "g.pdf").read_bytes()
    save(fig, tmp_path / "g.pdf")
    assert (tmp_path / "g.pdf").read_bytes() == first
