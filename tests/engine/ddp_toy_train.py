"""Train the toy segmenter for two epochs; run as is (one process) or under torchrun (DDP).

python ddp_toy_train.py OUT
python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_toy_train.py OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import BlobData, ToySegmenter  # noqa: E402

from detseg.engine import SegmentationTask, TrainConfig, Trainer  # noqa: E402
from detseg.engine.distributed import cleanup_distributed, init_distributed  # noqa: E402


def main(out: str) -> None:
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    torch.manual_seed(0)  # the same initial weights in every process (DDP also broadcasts rank 0's)
    model = ToySegmenter(dropout=0.0)
    config = TrainConfig(
        out=out, epochs=2, batch_size=4, lr=0.2, seed=3, quiet=True, device="cpu", plots=False
    )
    trainer = Trainer(model, SegmentationTask(2), BlobData(12), BlobData(5, seed=5), config)
    result = trainer.fit()
    if info.is_main:
        Path(out, "result.json").write_text(
            json.dumps({"world_size": info.world_size, "last": result["last"]})
        )
    cleanup_distributed()


if __name__ == "__main__":
    main(sys.argv[1])
