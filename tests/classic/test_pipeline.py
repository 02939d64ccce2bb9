"""Pipelines: parsing from a string and YAML, running, and precise errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detseg.classic import Pipeline, auto_seeds, fill_holes, opening, region_grow, threshold_adaptive


def _image():
    rng = np.random.default_rng(0)
    image = np.full((64, 64), 40, np.uint8)
    cv2.circle(image, (32, 32), 18, 200, -1)
    return np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)


def test_string_pipeline_equals_the_steps_by_hand():
    image = _image()
    text = "blur sigma=1.5; adaptive block_size=31 offset=-4; open radius=1; fill_holes"
    pipeline = Pipeline.from_string(text)
    expected = fill_holes(opening(threshold_adaptive(cv2.GaussianBlur(image, (0, 0), 1.5), 31, -4), 1))
    assert pipeline.output_kind == "mask"
    assert np.array_equal(pipeline(image), expected)


def test_yaml_pipeline_and_list_forms(tmp_path):
    image = _image()
    path = tmp_path / "steps.yaml"
    path.write_text("steps:\n  - median: {ksize: 5}\n  - otsu\n  - remove_small: {min_size: 20}\n")
    from_yaml = Pipeline.from_yaml(path)
    from_list = Pipeline([("median", {"ksize": 5}), "otsu", {"remove_small": {"min_size": 20}}])
    assert np.array_equal(from_yaml(image), from_list(image))
    assert from_yaml(image)[32, 32] and not from_yaml(image)[2, 2]
    seeds = Pipeline.from_string("region seeds=[[32,32]] tolerance=60")
    assert np.array_equal(seeds(image), region_grow(image, [(32, 32)], 60))
    assert Pipeline.from_string("kmeans k=2 seed=1").output_kind == "labels"
    automatic = Pipeline.from_string("region n_seeds=4 tolerance=5")(image)  # seeds chosen by auto_seeds
    assert np.array_equal(automatic, region_grow(image, auto_seeds(image, 4), 5))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("open", "step 1 'open' takes mask input but gets image"),
        ("otsu radis=2", "step 1 'otsu': got an unexpected keyword argument 'radis'"),
        ("otsu; dilate", "step 2: unknown step 'dilate'"),
        ("threshold", "step 1 'threshold': missing a required argument: 'threshold'"),
        ("kmeans k=3; open", "step 2 'open' takes mask input but gets labels"),
        ("otsu radius", "expected key=value"),
        ("", "no steps"),
    ],
)
def test_errors_name_the_step(text, message):
    with pytest.raises(ValueError, match=message):
        Pipeline.from_string(text)


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("steps: {otsu: 1}\n")
    with pytest.raises(ValueError, match="bad.yaml: expected a list of steps"):
        Pipeline.from_yaml(path)
    path.write_text("- otsu\n- open: {size: 3}\n")
    with pytest.raises(ValueError, match="bad.yaml: pipeline step 2 'open'"):
        Pipeline.from_yaml(path)
    with pytest.raises(ValueError, match="cannot read"):
        Pipeline.from_yaml(tmp_path / "missing.yaml")
