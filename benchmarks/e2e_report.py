"""Write docs/BENCHMARKS.md, docs/benchmarks.json and docs/bench_*.png from the raw benchmark JSON.

Called by ``benchmarks/e2e.py`` (stage ``report``). Inputs, all in the output folder:
``bench_raw_cudnn.json`` (``gpu_time.py`` on the lent GPU), ``bench_raw_cpu224.json`` and
``bench_raw_fmnist.json`` (``e2e.py`` here); the zoo (``zoo.json``) for params, MACs and plans. A missing
input leaves its section marked "not measured".
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from statistics import median
from typing import Any

SLOW_TOL = 1.05  # a layer counts as a slowdown when it runs > 5% slower than its dense shape


def _load(p: Path) -> Any:
    return json.loads(p.read_text()) if p.is_file() else None


def _ratio(dense: list[float], other: list[float]) -> float:
    """Median over rounds of dense/other: >1 means faster than dense."""
    return median(a / b for a, b in zip(dense, other, strict=True))


def _f(v: Any, nd: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _layer_counts(rows: list[dict], methods: tuple[str, ...]) -> dict[str, Any]:
    sel = [r for r in rows if r["method"] in methods]
    slow = [r for r in sel if r["pruned_ms"] > SLOW_TOL * r["dense_ms"]]
    strict = [r for r in sel if r["pruned_ms"] > r["dense_ms"]]
    worst = max((r["pruned_ms"] / r["dense_ms"] for r in sel), default=None)
    return {"decided": len(sel), "slow": len(slow), "slow_strict": len(strict), "worst": worst}


def cudnn_section(raw: dict | None, zoo: dict[str, dict], out: Path) -> tuple[list[str], dict[str, Any]]:
    L: list[str] = ["## cuDNN at 224x224 (lent GPU)", ""]
    js: dict[str, Any] = {
        k: None
        for k in (
            "speedup_vs_dense",
            "speedup_vs_uninstructed",
            "acc_dense",
            "acc_hwprune",
            "acc_uninstructed",
            "slowdown_decisions",
            "layers_decided",
            "device",
        )
    }
    if raw is None:
        return L + ["Not measured: `bench_raw_cudnn.json` is missing.", ""], js
    L += [
        f"Card: **{raw['device']}** (nvidia-smi: {raw['nvidia_smi']}), torch {raw['torch']}, cuDNN "
        f"{raw['cudnn']}, CUDA {raw['cuda']}; measured {raw['date']} by `benchmarks/gpu_time.py`. "
        f"{raw['notes']}. Each number is the median over 5 interleaved rounds (dense, then every pruned "
        "model, per round) of each round's median of 20 (batch 32) or 10 (batch 256) forwards timed one by "
        "one with CUDA events; speedups are the median of the per-round ratios dense/model; IQR is over all "
        "forwards. The predictors were fitted on tables measured on an **H100** (see the tables' sidecars) "
        "and planned at batch 32; these timings ran on the card named above.",
        "",
    ]
    rows: list[dict[str, Any]] = []
    for s in raw["settings"]:
        base = s["base"]
        r = s["results"]
        dn = r[f"{base}/dense"]["round_medians"]
        for name, v in r.items():
            z = zoo.get(name, {})
            sp = _ratio(dn, v["round_medians"])
            vs_tp = None
            if z.get("method") == "hwprune":
                tp = r.get(f"{name}/tp_l1")
                tp8 = r.get(f"{name}/tp_l1_r8")
                vs_tp = (
                    _ratio(tp["round_medians"], v["round_medians"]) if tp else None,
                    _ratio(tp8["round_medians"], v["round_medians"]) if tp8 else None,
                )
            rows.append(
                {
                    "base": base,
                    "dtype": s["dtype"],
                    "batch": s["batch"],
                    "bench": s["benchmark"],
                    "name": name,
                    "method": z.get("method"),
                    "plan": z.get("plan_target"),
                    "param_ratio": z.get("param_ratio"),
                    "macs": z.get("macs"),
                    "ms": v["median_ms"],
                    "iqr": v["q3_ms"] - v["q1_ms"],
                    "speedup": sp,
                    "vs_tp": vs_tp,
                }
            )

    # Headline: the reference point and hwprune's promise.
    def pick(base: str, dt: str, b: int, bench: bool, name: str) -> dict | None:
        return next(
            (
                x
                for x in rows
                if (x["base"], x["dtype"], x["batch"], x["bench"], x["name"]) == (base, dt, b, bench, name)
            ),
            None,
        )

    ref = pick("resnet18", "fp32", 32, False, "resnet18/tp_l1_uniform12")
    ref8 = pick("resnet18", "fp32", 32, False, "resnet18/tp_l1_r8_uniform12")
    ref256 = pick("resnet18", "fp32", 256, False, "resnet18/tp_l1_uniform12")
    head = pick("resnet18", "fp32", 32, False, "resnet18/hwprune_cuda_cudnn_fp32_50")
    L += ["### Headline", ""]
    if ref and head:
        L += [
            f"- The issue's reference (H200, cuDNN heuristics, ResNet-18, batch 32, uniform L1 of 12% of "
            f"channels: 1.49x slower than dense; 1.38x with round_to=8) **did not reproduce here in fp32**: "
            f"uniform L1 12% ran at {_f(ref['speedup'])}x of dense speed (round_to=8: "
            f"{_f(ref8['speedup'])}x) "
            f"at batch 32. At batch 256 it was {_f(ref256['speedup'])}x, i.e. "
            f"{_f(1 / ref256['speedup'])}x slower than dense (speed < 1 = slower).",
            f"- hwprune (fp32 cuDNN predictor, 50% latency budget): params {_f(head['param_ratio'], 3)} of "
            f"dense, **{_f(head['speedup'])}x** faster than dense at batch 32 (heuristics); "
            f"{_f(head['vs_tp'][0])}x against uniform L1 at the same parameter count, "
            f"{_f(head['vs_tp'][1])}x against round_to=8.",
        ]
    fp32_hw = [x for x in rows if x["method"] == "hwprune" and x["dtype"] == "fp32" and x["batch"] >= 32]
    slower = [x for x in fp32_hw if x["speedup"] < 0.98]
    L += [
        f"- Never slower than dense? In fp32 (batch 32 and 256, benchmark off and on), "
        f"{len(slower)} of {len(fp32_hw)} hwprune model timings were more than 2% slower than dense"
        + (
            ": " + ", ".join(f"{x['name']} b{x['batch']} {_f(x['speedup'])}x" for x in slower)
            if slower
            else "."
        )
    ]
    fp16_hw = [x for x in rows if x["method"] == "hwprune" and x["dtype"] == "fp16"]
    slower16 = [x for x in fp16_hw if x["speedup"] < 0.98]
    by_b = {b: sum(1 for x in slower16 if x["batch"] == b) for b in (32, 256)}
    L += [
        f"- In fp16, {len(slower16)} of {len(fp16_hw)} hwprune timings were more than 2% slower than dense "
        f"({by_b[32]} at batch 32, {by_b[256]} at batch 256). At batch 32 fp16 ResNet-18 takes under 2 ms "
        "and the savings from fewer channels hardly show, while widths that are not multiples of 8 ("
        "hwprune's and plain TP-L1's) ran up to ~15% slower than dense; the round_to=8 models ran at ~1.0x. "
        "fp16 tensor-core kernels favour multiples of 8, and the fp16 predictor (fitted on H100 tables) "
        "did not keep hwprune off those widths on this card. Goal not met in fp16 at batch 32.",
        "- TF32: fp32 here means TF32 off, as the `cuda_cudnn_fp32` target and its tables specify. PyTorch's "
        "default lets cuDNN use TF32 for convolutions; if the issue's 1.49x was measured that way, this run "
        "did not repeat its setting (not measured here).",
        "",
    ]
    # Full tables.
    for base in sorted({x["base"] for x in rows}):
        L += [
            f"### {base}",
            "",
            "| dtype | batch | cudnn.benchmark | model | params (of dense) | GMACs (b1) | median ms "
            "| IQR ms | "
            "speed vs dense | vs TP-L1 same params | vs TP-L1 round_to=8 |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for x in rows:
            if x["base"] != base:
                continue
            vt = x["vs_tp"] or (None, None)
            L.append(
                f"| {x['dtype']} | {x['batch']} | {'on' if x['bench'] else 'off'} | "
                f"{x['name'].split('/', 1)[1]} | {_f(x['param_ratio'], 3)} | {_f((x['macs'] or 0) / 1e9)} | "
                f"{_f(x['ms'], 3)} | {_f(x['iqr'], 3)} | {_f(x['speedup'])} | {_f(vt[0])} | {_f(vt[1])} |"
            )
        L.append("")
    if raw.get("graph_b1"):
        L += [
            "### Batch 1 through CUDA graphs (fp32, benchmark on)",
            "",
            "| model | median ms | speed vs dense |",
            "|---|---|---|",
        ]
        for base, r in raw["graph_b1"].items():
            dn = r[f"{base}/dense"]["round_medians"]
            for name, v in r.items():
                L.append(f"| {name} | {_f(v['median_ms'], 3)} | {_f(_ratio(dn, v['round_medians']))} |")
        L.append("")
    lc = _layer_counts(raw["layers"], ("hwprune",))
    lt = _layer_counts(raw["layers"], ("tp_l1", "tp_l1_r8"))
    per_dtype = {
        dt: _layer_counts([r for r in raw["layers"] if r["dtype"] == dt], ("hwprune",))
        for dt in ("fp32", "fp16")
    }
    L += [
        "### Layer decisions (P2), measured",
        "",
        "Every conv whose shape a pruned model changed, timed alone on this card at batch 32 in the plan's "
        "dtype (cudnn.benchmark on, as the tables were measured), against the same conv at its dense shape "
        "(middle of three medians of 20 forwards). hwprune's models planned for cuDNN, and the Torch-Pruning "
        f"models matched to them plus the uniform 12%/50% ones. A slowdown: > {int((SLOW_TOL - 1) * 100)}% "
        "slower than dense (strictly slower in brackets).",
        "",
        "| models | layers changed | slowdowns | worst (x dense) |",
        "|---|---|---|---|",
        f"| hwprune, all | {lc['decided']} | {lc['slow']} ({lc['slow_strict']}) | {_f(lc['worst'])} |",
        f"| hwprune, fp32 plans | {per_dtype['fp32']['decided']} | {per_dtype['fp32']['slow']} "
        f"({per_dtype['fp32']['slow_strict']}) | {_f(per_dtype['fp32']['worst'])} |",
        f"| hwprune, fp16 plans | {per_dtype['fp16']['decided']} | {per_dtype['fp16']['slow']} "
        f"({per_dtype['fp16']['slow_strict']}) | {_f(per_dtype['fp16']['worst'])} |",
        f"| Torch-Pruning L1 (both) | {lt['decided']} | {lt['slow']} ({lt['slow_strict']}) | "
        f"{_f(lt['worst'])} |",
        "",
    ]
    if head:
        js.update(
            speedup_vs_dense=head["speedup"],
            speedup_vs_uninstructed=head["vs_tp"][0],
            slowdown_decisions=per_dtype["fp32"]["slow"],
            layers_decided=per_dtype["fp32"]["decided"],
            device=f"{raw['device']} (cuDNN {raw['cudnn']}), ResNet-18 224x224 fp32 batch 32, "
            "cudnn.benchmark off, hwprune 50% budget; accuracy not measurable at 224 (no ImageNet)",
        )
    _plot_params(rows, out)
    L += [
        "![speed against parameter count, cuDNN](bench_cudnn_params_speed.png)",
        "",
        "(Accuracy cannot be measured at 224 here, so the cuDNN plot is speed against parameter count; every "
        "hwprune plan is shown, whatever target planned it.)",
        "",
    ]
    return L, js


def _plot_params(rows: list[dict], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    combos = [("fp32", 32, False), ("fp32", 256, False), ("fp16", 256, False)]
    bases = sorted({x["base"] for x in rows})
    fig, axes = plt.subplots(
        len(bases), len(combos), figsize=(5 * len(combos), 4 * len(bases)), squeeze=False
    )
    style = {"hwprune": ("o", "C0"), "tp_l1": ("s", "C1"), "tp_l1_r8": ("^", "C2"), "dense": ("*", "k")}
    for i, base in enumerate(bases):
        for j, (dt, b, bench) in enumerate(combos):
            ax = axes[i][j]
            for meth, (mk, col) in style.items():
                xs = [
                    x
                    for x in rows
                    if (x["base"], x["dtype"], x["batch"], x["bench"], x["method"])
                    == (base, dt, b, bench, meth)
                ]
                ax.scatter(
                    [x["param_ratio"] for x in xs], [x["speedup"] for x in xs], marker=mk, c=col, label=meth
                )
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.set_title(f"{base} {dt} b{b} cudnn.benchmark {'on' if bench else 'off'}", fontsize=9)
            ax.set_xlabel("params (share of dense)")
            ax.set_ylabel("speed vs dense (>1 faster)")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "bench_cudnn_params_speed.png", dpi=90)
    plt.close(fig)


def cpu224_section(raw: dict | None, zoo: dict[str, dict], out: Path) -> tuple[list[str], dict[str, Any]]:
    L = ["## This CPU at 224x224 (torch, batch 1)", ""]
    info: dict[str, Any] = {}
    if raw is None:
        return L + ["Not measured: `bench_raw_cpu224.json` is missing.", ""], info
    s = raw["samples_ms"]
    dn = s["resnet18/dense"]
    L += [
        f"{raw['machine']}, torch {raw['torch']}, {raw['threads']} thread (the cpu_torch target's setting), "
        f"input {raw['input']}; {raw['date']}, commit {raw['commit']}. {raw['rounds']} interleaved rounds, "
        f"each sample the median of 5 forwards; speed = median over rounds of dense/model. Load: "
        f"{raw['load_before']} before, {raw['load_after']} after — CPU numbers are noisy.",
        "",
        "| model | params (of dense) | median ms | min-max of round medians | speed vs dense | vs TP-L1 | "
        "vs TP-L1 r8 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in s.items():
        z = zoo.get(name, {})
        vt: tuple[Any, Any] = (None, None)
        if z.get("method") == "hwprune" and f"{name}/tp_l1" in s:
            vt = (
                _ratio(s[f"{name}/tp_l1"], v),
                _ratio(s[f"{name}/tp_l1_r8"], v) if f"{name}/tp_l1_r8" in s else None,
            )
        L.append(
            f"| {name.split('/', 1)[1]} | {_f(z.get('param_ratio'), 3)} | {_f(median(v))} | "
            f"{_f(min(v))}-{_f(max(v))} | {_f(_ratio(dn, v))} | {_f(vt[0])} | {_f(vt[1])} |"
        )
        if name == "resnet18/hwprune_cpu_torch_50":
            info = {"speedup": _ratio(dn, v), "vs_tp": vt[0]}
    lc = _layer_counts(raw["layers"], ("hwprune",))
    lt = _layer_counts(raw["layers"], ("tp_l1", "tp_l1_r8"))
    info.update(slow=lc["slow"], decided=lc["decided"])
    L += [
        "",
        f"Layer decisions of the cpu_torch plans, each changed conv timed alone on this CPU (1 thread) "
        f"against its dense shape: hwprune {lc['slow']} of {lc['decided']} more than 5% slower "
        f"({lc['slow_strict']} strictly slower; worst {_f(lc['worst'])}x); Torch-Pruning L1 models "
        f"matched to "
        f"them and the uniform ones: {lt['slow']} of {lt['decided']} (worst {_f(lt['worst'])}x).",
        "",
    ]
    return L, info


def fmnist_section(raw: dict | None, out: Path) -> tuple[list[str], dict[str, Any]]:
    L = ["## Fashion-MNIST, the default model (small_resnet), this CPU", ""]
    if raw is None:
        return L + ["Not measured: `bench_raw_fmnist.json` is missing.", ""], {}
    r = raw["results"]
    dn = r["dense"]["latency_samples_ms"]
    L += [
        f"{raw['machine']}, torch {raw['torch']}; {raw['date']}, commit {raw['commit']}. **Affordable "
        f"setting, stated plainly:** {raw['subset_train_images']} training images (FashionMNISTDataModule "
        f"`subset`; validation and test sets are {raw['test_images']}), no augmentation, AdamW lr 2e-3. "
        f"One dense checkpoint trained {raw['dense_epochs']} epochs; then every method fine-tunes "
        f"{raw['ft_epochs']} epochs from it with the same seed; pruning methods act at the start of "
        f"fine-tune "
        "epoch 1 (ModelPruning prunes 50% of weights, global L1 unstructured, at the end of epoch 0). "
        "hwprune: `HardwareAwarePruning` with the cpu_torch predictor fitted on "
        "`tables/cpu_torch/small_resnet_28.csv`, latency_ratio 0.5, one step. Uninstructed: "
        "`UninstructedPruning` at the uniform ratio whose parameter count matches hwprune's. "
        "Latency: batch 1, "
        f"1 thread, {len(dn)} interleaved rounds of the median of 30 forwards. {raw['load_after']}.",
        "",
        "| method | test acc | params | nonzero params | MMACs | median ms | min-max | speed vs dense |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, v in r.items():
        s = v["latency_samples_ms"]
        L.append(
            f"| {k} | {v['test_acc']:.4f} | {v['params']} | {v['nonzero_params']} | {v['macs'] / 1e6:.2f} | "
            f"{_f(median(s), 3)} | {_f(min(s), 3)}-{_f(max(s), 3)} | {_f(_ratio(dn, s))} |"
        )
    hw = r["hwprune"]
    un = r["uninstructed"]
    info = {
        "speedup": _ratio(dn, hw["latency_samples_ms"]),
        "vs_tp": _ratio(un["latency_samples_ms"], hw["latency_samples_ms"]),
        "acc_dense": r["dense"]["test_acc"],
        "acc_hwprune": hw["test_acc"],
        "acc_uninstructed": un["test_acc"],
    }
    steps = hw.get("report_steps", [])
    ep = [t for t in hw["epoch_s"]]
    plan = sum(s["plan_seconds"] for s in steps)
    L += [
        "",
        f"**P5 (overhead):** hwprune's planning + pruning took {plan:.2f} s in {len(steps)} step(s) "
        f"(the report's `plan_seconds`), against a median fine-tune epoch of {median(ep):.1f} s on "
        f"{raw['subset_train_images']} images: {100 * plan / median(ep):.1f}% of one epoch here. On the full "
        f"55,000-image epoch it would be about "
        f"{100 * plan / (median(ep) * 55000 / raw['subset_train_images']):.1f}%"
        " (epoch time scaled by images; planning does not depend on the data size).",
        "",
    ]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 4))
        for k, v in r.items():
            ax.scatter(median(v["latency_samples_ms"]), v["test_acc"], label=k, s=40)
        ax.set_xlabel("latency ms (this CPU, 1 thread, batch 1)")
        ax.set_ylabel("test accuracy")
        ax.set_title("small_resnet, Fashion-MNIST subset: torch_cpu", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "bench_torch_cpu_pareto.png", dpi=90)
        plt.close(fig)
        L += ["![accuracy against latency, torch_cpu](bench_torch_cpu_pareto.png)", ""]
    except ImportError:
        pass
    return L, info


def write(out: Path, zoo_path: Path) -> None:
    zoo_doc = json.loads(zoo_path.read_text()) if zoo_path.is_file() else {}
    zoo_list = zoo_doc.get("models", [])
    zoo_when = (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(zoo_path.stat().st_mtime))
        if zoo_path.is_file()
        else "n/a"
    )
    zoo = {e["name"]: e for e in zoo_list}
    cud = _load(out / "bench_raw_cudnn.json")
    cpu = _load(out / "bench_raw_cpu224.json")
    fm = _load(out / "bench_raw_fmnist.json")
    from e2e import stamp

    st = stamp()
    L = [
        "# Benchmarks: end to end (issue 6)",
        "",
        f"Generated by `benchmarks/e2e.py` on {st['date']} at commit {st['commit']} (this machine: "
        f"{st['machine']}). Pruned models come from `benchmarks/zoo.py` (run here); the GPU numbers from "
        "`benchmarks/gpu_time.py` on the lent GPU (its JSON is `docs/bench_raw_cudnn.json`). Raw data: "
        f"`docs/bench_raw_*.json`. The zoo was written {zoo_when} at commit "
        f"{zoo_doc.get('commit', 'not recorded in that zoo.json (the field came later)')}, in "
        f"{zoo_doc.get('wall_s', 0) / 60:.0f} min on this loaded 2-core machine.",
        "",
        "How the 224x224 models were made: ResNet-18 and MobileNetV2 (torchvision, 1000 classes, random "
        "weights: no ImageNet here, so latency only). hwprune = `prune_to_budget` (L1 importance, snap up, "
        "min 25% per group) with a `LatencyPredictor` (extra trees) fitted on the shipped table of "
        "the target "
        "named in the model (`cuda_cudnn_fp32`, `cuda_cudnn_fp16`: planned at batch 32; "
        "`cpu_torch`: batch 1), "
        "at latency budgets of 85/70/50/35% of the dense model's predicted latency. TP-L1 = Torch-Pruning "
        "MetaPruner, uniform ratio, L1 magnitude, searched to the same parameter count as each hwprune model "
        "(within 1%, or the nearest of 6 tries; `round_to=8` likewise); plus uniform L1 at 12% and 50% of "
        "channels, the issue's reference points.",
        "",
    ]
    c_lines, c_js = cudnn_section(cud, zoo, out)
    p_lines, p_info = cpu224_section(cpu, zoo, out)
    f_lines, f_info = fmnist_section(fm, out)
    L += c_lines + p_lines + f_lines
    torch_cpu = {
        "speedup_vs_dense": f_info.get("speedup"),
        "speedup_vs_uninstructed": f_info.get("vs_tp"),
        "acc_dense": f_info.get("acc_dense"),
        "acc_hwprune": f_info.get("acc_hwprune"),
        "acc_uninstructed": f_info.get("acc_uninstructed"),
        "slowdown_decisions": p_info.get("slow"),
        "layers_decided": p_info.get("decided"),
        "device": (
            f"{st['machine']} (torch CPU, 1 thread); speedups and accuracy: small_resnet on "
            "Fashion-MNIST 28x28 batch 1; decisions: ResNet-18 224 cpu_torch plans"
        )
        if f_info or p_info
        else None,
    }
    tvm = {k: None for k in c_js}
    tvm["device"] = None
    out_js = {
        "torch_cpu": torch_cpu,
        "tvm_llvm": tvm,
        "cudnn": c_js,
        "_meta": {
            "date": st["date"],
            "commit": st["commit"],
            "notes": "null = not measured; see BENCHMARKS.md. speedups > 1 mean faster.",
        },
    }
    L += [
        "## TVM (llvm, this CPU)",
        "",
        "Not measured end to end: each TVM model needs MetaSchedule tuning per conv shape (the "
        "shipped table's "
        "one tuned layer took 482 s on this 2-core VM for 16 trials; a pruned ResNet-18 has ~20 new shapes), "
        "which does not fit this session. `tvm_llvm` in `benchmarks.json` is therefore null; the layer-level "
        "figures from `tables/cpu_tvm_llvm/resnet18_224.csv` are in `docs/REPRODUCTION.md`.",
        "",
        "## benchmarks.json",
        "",
        "```json",
        json.dumps(out_js, indent=1),
        "```",
        "",
        "## Against the goals",
        "",
        "- >= 2x over dense at <= 1 point accuracy drop: see the cuDNN headline (latency only at "
        "224) and the "
        "Fashion-MNIST table (accuracy and latency together, CPU).",
        "- >= 1.3x over uninstructed at equal accuracy: `speedup_vs_uninstructed` above.",
        "- zero hwprune layer decisions slower than dense: `slowdown_decisions` above (not met where > 0).",
        "",
    ]
    (out / "BENCHMARKS.md").write_text("\n".join(L))
    (out / "benchmarks.json").write_text(json.dumps(out_js, indent=1))
