"""hwprune main job: compose the Hydra config, fine-tune (and prune), test, report.

python train.py                      # default: small_resnet on Fashion-MNIST, this machine's CPU
python train.py pruning=hw_aware     # prune to a latency budget on the chosen device
python train.py --help               # config groups and their options
"""

import hydra
from omegaconf import DictConfig


# The config tree is package data (hwprune/conf), so this script, `hwprune` and an installed wheel share it.
@hydra.main(version_base="1.3", config_path="pkg://hwprune.conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from hwprune.run import train  # here, not at the top: `--help` needs no Lightning or torch (0.1 s, not 6)

    metrics = train(cfg)
    print("\n== hwprune: final metrics ==")
    for key in sorted(metrics):
        if key != "run_dir":
            print(f"  {key:<24} {metrics[key]}")
    print(f"  run folder               {metrics['run_dir']}")


if __name__ == "__main__":
    main()
