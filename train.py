"""Train a CLAP model. Every experiment is a Hydra config (conf/).

python train.py                                   # the embedded default: synthetic shards, small model, CPU
python train.py optim.lr=3e-4 trainer.max_epochs=5
python train.py experiment=<name> trainer=ddp trainer.devices=8 data.train_shards='/data/train/{000000..000127}.tar'
python train.py -m optim.lr=1e-4,3e-4             # a sweep: one deterministic run dir per job
python train.py init_from=path/to/checkpoint.ckpt # fine-tune from weights
python train.py ckpt_path=runs/default/checkpoints/last.ckpt   # resume the full state
"""

import sys

import hydra
from omegaconf import DictConfig

from clap_train.overrides import hydra_overrides
from clap_train.schema import register

register()  # resolvers and the typed blocks' defaults (clap_train/schema.py)
sys.argv[1:] = hydra_overrides(sys.argv[1:])  # source overrides without `+`, brace patterns as typed


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from clap_train import watchdog
    from clap_train.checkpoints.io import DiskFull
    from clap_train.config import ConfigError
    from clap_train.run import run

    try:
        results = run(cfg)
    except (ConfigError, DiskFull) as e:  # a config, input or disk problem: one clear line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        watchdog.abort(str(e))  # other ranks (waiting for this one) stop too
        sys.exit(2)
    # the sweeper's objective: held-out zero-shot accuracy when there is one
    val = results.get("val", {})
    return val.get("val/mean/zeroshot_top1")


if __name__ == "__main__":
    main()
