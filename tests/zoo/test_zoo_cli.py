"""``detseg zoo list`` and ``detseg zoo bench``: the table's rows are the registry, its figures are the
figures file's with how they were obtained, and bench measures what torch and torchvision say."""

from __future__ import annotations

import json

import torch
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import MobileNet_V3_Large_Weights

from detseg.cli import main
from detseg.models.zoo import create_model, list_models
from detseg.zoo.figures import how_obtained, load_figures, record_figures

SMALL = "mobilenet_v3_large_classifier"  # 0.4 GFLOPs at 224 px: the quickest model to bench


def _list(capsys, *args: str) -> str:
    assert main(["zoo", "list", *args]) == 0
    return capsys.readouterr().out


def test_zoo_list_rows_are_the_registry_with_recorded_figures_and_provenance(zoo_tmp, capsys):
    how = how_obtained("detseg zoo bench unet --repeats 1", note="a test note")
    record_figures("unet", {"params": {"value": 31_043_586, "how": how},
                            "gflops": {"value": 123.456, "input_size": [3, 512, 512], "how": how},
                            "cpu_ms": {"value": 987.6, "cpu_time_ms": 654.3, "threads": 1, "repeats": 1,
                                       "how": how},
                            "accuracy": {"value": 0.8766, "metric": "miou", "data": "shapes val",
                                         "how": how_obtained("detseg zoo build unet --device cpu")}})
    rows = json.loads(_list(capsys, "--json"))
    assert [r["name"] for r in rows] == list_models()
    unet = next(r for r in rows if r["name"] == "unet")
    assert unet["figures"] == load_figures(zoo_tmp)["models"]["unet"]  # with "how" for every figure
    assert unet["figures"]["cpu_ms"]["how"]["machine"]["device"] == "cpu"
    assert unet["task"] == "segment" and unet["outputs"] == "masks" and unet["recipe"] is True

    text = _list(capsys)
    line = next(ln for ln in text.splitlines() if ln.startswith("unet "))
    cells = [c.strip() for c in line.split("|")]
    assert cells[4:10] == ["31.0", "123.5", "988", "654", "miou 0.877", "shapes val"]
    assert sum(ln.startswith(tuple(list_models())) for ln in text.splitlines()) == len(list_models())
    # Footnotes: how the figures were obtained (with the bench's note) and how to get missing ones.
    assert "a test note" in text and "`detseg zoo build unet --device cpu`" in text
    assert "detseg zoo build NAME" in text and "unet_resnet18" in text  # a recipe, not built yet
    assert "benchmarks/hymenoptera_transfer.py" in text  # classifiers' accuracy

    detect = json.loads(_list(capsys, "--task", "detect", "--json"))
    assert [r["name"] for r in detect] == list_models(task="detect")
    assert {r["outputs"] for r in detect} == {"boxes"}


def test_zoo_bench_measures_params_and_flops_as_torch_and_torchvision_do(zoo_tmp, tmp_path, capsys):
    given = tmp_path / "given" / "figures.json"
    assert main(["zoo", "bench", SMALL, "--repeats", "1", "--warmup", "0", "--threads", "1", "--write",
                 "--note", "test", "--figures", str(given)]) == 0
    assert SMALL in capsys.readouterr().out
    assert not zoo_tmp.exists()  # --figures wins over $DETSEG_ZOO_FIGURES (set by conftest)
    figures = load_figures(given)["models"][SMALL]
    assert set(figures) == {"params", "gflops", "cpu_ms"}

    model = create_model(SMALL).eval()
    assert figures["params"]["value"] == sum(p.numel() for p in model.parameters())
    # torchvision's published figures for this architecture (1000 classes, 224 px): 5,483,032
    # parameters, 0.217 G multiply-adds (FLOPs here count a multiply-add as 2).
    meta = MobileNet_V3_Large_Weights.IMAGENET1K_V1.meta
    assert figures["params"]["value"] == meta["num_params"]
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, 224, 224))
    assert figures["gflops"]["value"] == round(counter.get_total_flops() / 1e9, 3)
    assert abs(figures["gflops"]["value"] / 2 - meta["_ops"]) < 0.0015
    assert figures["gflops"]["input_size"] == [3, 224, 224]

    ms = figures["cpu_ms"]
    assert ms["value"] > 0 and ms["cpu_time_ms"] > 0 and (ms["threads"], ms["repeats"]) == (1, 1)
    how = ms["how"]
    assert how["command"].startswith(f"detseg zoo bench {SMALL} --threads 1 --repeats 1")
    assert how["note"] == "test" and how["machine"]["device"] == "cpu" and how["date"]
    assert how["machine"]["torch_threads"] == 1  # the passes' threads, not torch's default


def test_zoo_bench_without_write_leaves_the_figures_file_alone(zoo_tmp, capsys):
    assert main(["zoo", "bench", SMALL, "--repeats", "1", "--warmup", "0"]) == 0
    assert not zoo_tmp.exists()
    assert main(["zoo", "bench", "unet_resnet19"]) == 2
    assert "did you mean unet_resnet18" in capsys.readouterr().err
