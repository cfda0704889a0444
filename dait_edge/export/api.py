"""`export_run`: a distill run's student -> verified ONNX / TensorRT artifacts + sidecars + summary.

Every artifact is built at a hidden temp path beside its final name, checked (onnx.checker, parity
against PyTorch), renamed into place, and only then gets its sidecar. A killed export leaves at
most `.*.tmp` files, never an artifact with a sidecar that was not verified.

The rooms: source.py (the run and its student), images.py (which images check what), build.py (each
ONNX format, int8 within its budget), parity.py (artifact vs PyTorch), artifacts.py (names, sidecars,
summary entries), tensorrt.py (engines).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from dait_edge.errors import QATDiverged, UserError
from dait_edge.export import artifacts, parity
from dait_edge.export.build import Built, Int8Judge, accuracy_settings, build_onnx, check_opset, onnx_opset
from dait_edge.export.images import CALIB_SAMPLES, PARITY_SAMPLES, VAL_SAMPLES, int8_images, load_images
from dait_edge.export.recipes import Recipe, expand_formats, plan_recipes
from dait_edge.export.source import RunInfo, load_student, resolve_run
from dait_edge.records import ArtifactEntry, ExportSummary, RunLayout, Sidecar
from dait_edge.records.layout import RUNS_ROOT
from dait_edge.utils.io import temp_path_beside
from dait_edge.utils.signals import check_stop


def export_run(
    path: str | Path | None = None,
    *,
    formats: str | list[str] | None = None,
    fp16: bool = False,
    int8: bool = False,
    trt: bool = False,
    out: str | Path | None = None,
    checkpoint: str = "last",
    calib_samples: int = CALIB_SAMPLES,
    parity_samples: int = PARITY_SAMPLES,
    data_root: str | None = None,
    opset: int | None = None,
    runs_root: str | Path = RUNS_ROOT,
    measure_speed: bool = True,
    max_top1_drop: float | None = None,
    calibration_method: str | None = None,
    max_fallback_nodes: int | None = None,
    val_samples: int = VAL_SAMPLES,
    qat: bool | str = False,
    qat_epochs: int | None = None,
    qat_lr: float | None = None,
    qat_teacher: str | None = None,
    progress: bool = True,
    log=print,
) -> ExportSummary:
    """Export one run's student; returns the export summary (also written to OUT/summary.json).

    int8 artifacts keep their accuracy: `max_top1_drop` (None: the recipe's [accuracy] value) is the top-1
    budget on validation images, `calibration_method` minmax / entropy / percentile / search (None: the
    recipe's), `max_fallback_nodes` the most nodes returned to float (None: 20% of the quantisable ones).
    `qat` adds the quantisation-aware int8 (`onnx-int8-qat` and its u8s8 conversion; `qat_epochs`, `qat_lr`
    override its recipe); `qat="auto"` builds them only where post-training u8s8 int8 missed its budget."""
    if qat not in (False, True, AUTO):
        raise UserError(f"qat must be on, off or {AUTO!r}, not {qat!r}.", setting="qat")
    recipes, wanted = _checked_recipes(
        formats, fp16, int8, trt, opset, max_top1_drop, calibration_method, max_fallback_nodes, qat
    )
    for recipe in recipes:  # a missing runtime or converter is said before the student is loaded
        if recipe.mobile:
            from dait_edge.export.mobile import backend_for

            backend_for(recipe).require()
    given = (("epochs", qat_epochs), ("lr", qat_lr), ("teacher", qat_teacher))
    overrides = {k: v for k, v in given if v is not None}
    if overrides and not qat:
        raise UserError(
            f"QAT settings ({', '.join(overrides)}) were given without QAT; add --qat or --qat-auto.",
            setting="qat",
        )
    for setting, value in (("calib_samples", calib_samples), ("parity_samples", parity_samples)):
        if value < 1:
            raise UserError(f"{setting.replace('_', ' ')} must be at least 1, not {value}.", setting=setting)
    info = resolve_run(path, checkpoint=checkpoint, runs_root=runs_root, data_root=data_root)
    out_dir = Path(out) if out else RunLayout(info.run_dir).export
    out_dir.mkdir(parents=True, exist_ok=True)

    job = _Export(info, out_dir, wanted, measure_speed, log)
    if info.data_config.source != "run":  # a run from before runs chose their preprocessing
        log(f"preprocessing: {info.data_config.describe()}")
    job.model = load_student(info)
    job.test = load_images(info.dataset, info.data_root, "test", parity_samples, info.data_config)
    if job.test.note:
        log(f"parity: {job.test.note}")
    job.reference = parity.torch_logits(job.model, job.test.images)
    if any(r.precision == "int8" and (r.kind == "onnx" or r.mobile) for r in recipes):
        job.calibration, validation = int8_images(info, calib_samples, val_samples)
        if job.calibration.note:
            log(f"calibration: {job.calibration.note}")
        job.judge = Int8Judge(
            validation=validation,
            num_classes=info.summary.num_classes,
            budget=max_top1_drop,
            method=calibration_method,
            max_fallback=max_fallback_nodes,
            test=job.test,
            measure_speed=measure_speed,
            input_size=info.data_config.input_size,
            log=log,
            progress=progress,
            student_sha256=info.checkpoint_sha256 or "",
        )
        if any(r.qat for r in recipes):
            try:
                _prepare_qat(job, info, recipes, overrides, calib_samples, val_samples)
            except UserError as err:
                if qat != AUTO:
                    raise
                job.qat_blocked = str(err)  # --qat-auto: reported in `skipped` if QAT turns out to be needed
    try:
        for recipe in recipes:
            check_stop(f"export stopped before {recipe.name}", f"the finished artifacts are in {out_dir}")
            skip = _qat_skip(job, recipe, recipes, qat)
            if skip:
                log(skip)
                job.skipped.append(skip)
            elif recipe.kind == "trt":
                job.export_trt(recipe)
            elif recipe.mobile:
                job.export_mobile(recipe)
            else:
                try:
                    job.export_onnx(recipe)
                except QATDiverged as err:  # a training outcome, not bad input: the rest is still built
                    job.qat_diverged = str(err)
                    job.skipped.append(f"{recipe.name}: not built: {err}")
                    log(job.skipped[-1])
    finally:
        for tmp in [*job.temps, *job.built.prepared.values()]:
            tmp.unlink(missing_ok=True)
    summary = job.summary()
    summary.write(out_dir)
    return summary


AUTO = "auto"  # export_run(qat=AUTO): QAT only where post-training int8 misses its budget


def _prepare_qat(job, info, recipes, overrides, calib_samples: int, val_samples: int) -> None:
    """What QAT needs before any format is built: Model Optimizer, the fine-tuning images, the run's tau,
    and the intermediate teacher where it teaches."""
    from dait_edge.export.images import qat_images
    from dait_edge.export.qat import require_modelopt, run_teacher

    require_modelopt()  # before any image is read
    run_tau = info.manifest.config.temperature if info.manifest else None
    job.judge.qat = overrides | ({"temperature": run_tau} if run_tau else {})
    job.judge.training = qat_images(info, calib_samples, val_samples)
    teachers = {overrides.get("teacher", r.qat.get("teacher", "student")) for r in recipes if r.qat}
    if "teacher" in teachers:
        job.judge.qat_teacher = run_teacher(info, job.model)


def _qat_skip(job, recipe: Recipe, recipes: list[Recipe], qat) -> str | None:
    """Why `recipe` (a QAT format, or one built from it) is not built, in the line `skipped` keeps; None: build."""
    if not _from_qat(recipe, recipes):
        return None
    if job.qat_diverged:
        return f"{recipe.name}: not built: its QAT source diverged ({job.qat_diverged})"
    unneeded = qat_unneeded(job.artifacts) if qat == AUTO else None
    if not unneeded and job.qat_blocked:
        unneeded = f"post-training int8 missed its budget, but QAT cannot run: {job.qat_blocked}"
    return f"{recipe.name}: not built (--qat-auto): {unneeded}" if unneeded else None


def _from_qat(recipe: Recipe, recipes: list[Recipe]) -> bool:
    """Is `recipe` a QAT format or built from one?"""
    qat_names = {r.name for r in recipes if r.qat}
    return bool(recipe.qat) or recipe.source in qat_names


def qat_unneeded(artifacts: list[ArtifactEntry]) -> str | None:
    """Why QAT need not run, judged by the post-training int8 artifacts built so far (None: it must): every
    one kept its budget, or none could be judged (then QAT could not be judged either)."""
    judged = [
        a.accuracy
        for a in artifacts
        if a.precision == "int8" and a.accuracy is not None and not (a.variant or "").startswith("qat")
    ]
    if not judged:
        return "no post-training int8 artifact to judge by; add --int8, or pass --qat to run it anyway"
    if any(not accuracy.checked for accuracy in judged):
        return "post-training int8's budget could not be checked (no validation images); pass --qat to run it"
    if all(accuracy.budget_met for accuracy in judged):
        drops = ", ".join(f"{accuracy.drop:+.2f}" for accuracy in judged)
        return f"post-training int8 kept the {judged[0].budget:g}-point budget (drop {drops} points)"
    return None


def _checked_recipes(
    formats, fp16, int8, trt, opset, max_top1_drop, calibration_method, max_fallback_nodes, qat=False
) -> tuple[list[Recipe], set[str]]:
    """The recipes to run (sources first) and the formats asked for; every setting is checked before
    anything is built, even where no format uses it: a typo never passes silently."""
    from dait_edge.export.int8_search import check_settings

    # --qat-auto needs post-training u8s8 first: it judges whether QAT must run
    names = expand_formats(formats, fp16=fp16, int8=int8, trt=trt, qat=bool(qat))
    if qat == AUTO:
        qat_names = [n for n in names if n.startswith("onnx-int8-qat")]
        names = [n for n in names if n not in qat_names]
        names += [] if any(n.startswith("onnx-int8-") for n in names) else ["onnx-int8-u8s8"]
        names += qat_names
    recipes, wanted = plan_recipes(names)
    check_settings(calibration_method or "minmax", 1.0 if max_top1_drop is None else max_top1_drop)
    check_opset(opset)
    for recipe in recipes:
        if recipe.precision == "int8" and recipe.kind == "onnx":
            budget, method = accuracy_settings(recipe, max_top1_drop, calibration_method)
            check_settings(method, budget)
    if max_fallback_nodes is not None and max_fallback_nodes < 0:
        raise UserError(
            f"max fallback nodes must be 0 or more, not {max_fallback_nodes}.", setting="max_fallback_nodes"
        )
    if opset is not None:
        for r in recipes:
            r.opset = opset
    return recipes, wanted


@dataclass
class _Export:
    """One export in progress: the student and its reference logits, what is built so far, the files to
    remove at the end, the artifacts written and their speed."""

    info: RunInfo
    out_dir: Path
    wanted: set[str]
    measure_speed: bool
    log: object
    model: object = None
    test: object = None  # images.ImageBatch: the parity images
    reference: object = None  # the PyTorch logits on them
    calibration: object = None  # images.ImageBatch: int8 calibration images
    judge: Int8Judge | None = None
    built: Built = field(default_factory=Built)
    temps: list[Path] = field(default_factory=list)
    artifacts: list[ArtifactEntry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    latencies: dict[str, float] = field(default_factory=dict)
    qat_blocked: str | None = None  # --qat-auto: why QAT could not be prepared
    qat_diverged: str | None = None  # QAT's loss became NaN: its formats are reported, the rest is built

    def export_onnx(self, recipe: Recipe) -> None:
        """Build, check and (when asked for) keep one ONNX format; a format wanted only as another's source
        stays a temp file."""
        final = artifacts.artifact_path(self.out_dir, recipe.name)
        if recipe.name in self.wanted:
            artifacts.remove_artifact(final)
        tmp = temp_path_beside(final)
        self.temps.append(tmp)
        input_size = self.info.data_config.input_size
        accuracy = build_onnx(
            recipe, self.model, tmp, self.built, input_size, self.calibration, self.judge, self.temps
        )
        result = parity.ort_logits(tmp, self.test.images)
        # QAT's files are checked against the model they were made from, every other against the student
        own = accuracy.reference if accuracy is not None else None
        check = self.check_parity(recipe, self.reference if own is None else own, result)
        if self.measure_speed:
            self.latencies[recipe.name] = parity.latency_ms(tmp, input_size)
        if recipe.name not in self.wanted:
            self.built[recipe.name] = tmp  # only a source for another format; removed at the end
            if accuracy is not None and accuracy.qat_state is not None:
                accuracy.qat_state.unlink(missing_ok=True)  # checked and in use: nothing left to resume
            return
        os.replace(tmp, final)
        self.temps.remove(tmp)
        self.built[recipe.name] = final
        if accuracy is not None:
            self.judge.finish(accuracy, final, result, recipe.name, self.latencies.get(recipe.name))
        sidecar = artifacts.sidecar(recipe, self.info, check, "onnxruntime", opset=onnx_opset(final))
        sidecar.quantization = artifacts.quantization(recipe, final, self.calibration, accuracy)
        if accuracy is not None and accuracy.qat:
            sidecar.quantization["qat"] = accuracy.qat
        sidecar.write_for(final)
        if accuracy is not None and accuracy.qat_state is not None:
            accuracy.qat_state.unlink(missing_ok=True)  # finished: nothing left to resume
        entry = artifacts.entry(recipe, final, check)
        entry.accuracy = accuracy.record if accuracy is not None else None
        self.artifacts.append(entry)
        self.warn_parity(recipe, check)

    def check_parity(self, recipe: Recipe, reference, result):
        """The parity record; a fatal disagreement is an error (the temp file is removed at the end)."""
        check = parity.compare(reference, result, self.test, recipe.threshold)
        if not check.passed and recipe.parity_fatal:
            hint = (
                "try another opset, or another exporter in the recipe"
                if recipe.kind == "onnx"
                else f"report it with the model name; export the onnx formats meanwhile ({recipe.kind} lowering"
                " changed the model's output)"
            )
            raise UserError(
                f"{recipe.name} disagrees with PyTorch: top-1 agreement {check.agreement:.2f}% <"
                f" {recipe.threshold}% on {check.samples} {check.data} inputs (max |logit diff|"
                f" {check.max_abs_diff:.3g}); artifact removed; {hint}.",
                setting="opset" if recipe.kind == "onnx" else "formats",
            )
        return check

    def warn_parity(self, recipe: Recipe, check) -> None:
        if not check.passed:
            cost = ""
            if check.top1_pytorch is not None:
                cost = f", top-1 {check.top1_artifact:.2f}% vs {check.top1_pytorch:.2f}% in PyTorch"
            self.log(
                f"warning: {recipe.name} agrees with PyTorch on {check.agreement:.2f}% of inputs"
                f" (< {recipe.threshold}%){cost}; kept with parity.passed = false."
            )

    def export_mobile(self, recipe: Recipe) -> None:
        """An ExecuTorch .pte or LiteRT .tflite (export/mobile.py)."""
        from dait_edge.export.mobile import export_file

        export_file(self, recipe)

    def export_trt(self, recipe: Recipe) -> None:
        """A TensorRT engine from its ONNX source, or a message naming why it was skipped."""
        from dait_edge.export import tensorrt

        available = tensorrt.trt_availability()
        if not available.ok:
            message = tensorrt.skip_message([recipe.name], available.reason)
            self.log(message)
            self.skipped.append(message)
            return
        name = tensorrt.engine_name(artifacts.ARTIFACT_STEM, recipe.name, available.version, available.gpu)
        final = self.out_dir / name
        Sidecar.path_for(final).unlink(missing_ok=True)  # a sidecar means a finished engine
        tmp = temp_path_beside(final)
        try:
            facts = tensorrt.build_engine(
                self.built[recipe.source],
                tmp,
                input_name="input",
                input_size=self.info.data_config.input_size,
                batch_range=recipe.batch_range,
                workspace_mb=int(recipe.trt.get("workspace_mb", 2048)),
                timing_cache=self.out_dir / recipe.trt.get("timing_cache", "trt-timing.cache"),
                precision=recipe.precision,
            )
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        # No parity here: `dait-edge profile --dataset` measures its top-1 on the GPU, and until then the
        # best-artifact rule does not choose it.
        sidecar = artifacts.sidecar(
            recipe,
            self.info,
            None,
            "tensorrt",
            dynamic_batch=True,
            tensorrt=facts,
            gpu=available.gpu,
            onnx_source=recipe.source,
        )
        sidecar.write_for(final)
        self.artifacts.append(artifacts.entry(recipe, final, None))

    def summary(self) -> ExportSummary:
        """export/summary.json: the artifacts, what was skipped, and how fast each ran against fp32."""
        fp32_ms = self.latencies.get("onnx-fp32")
        notes = []
        for name, ms in self.latencies.items():
            if name == "onnx-fp32" or name not in self.wanted:
                continue
            # an on-device runtime's int8 file against its own fp32 file where both were built
            own = f"{name.split('-')[0]}-fp32"
            if not name.startswith("onnx") and own != name and self.latencies.get(own):
                notes.append(parity.speed_note(name, ms, self.latencies[own], than=own))
            elif fp32_ms:
                notes.append(
                    parity.speed_note(
                        name, ms, fp32_ms, than="fp32" if name.startswith("onnx") else "onnx-fp32"
                    )
                )
        for entry in self.artifacts:
            if entry.format in self.latencies:
                entry.latency_ms_batch1 = round(self.latencies[entry.format], 3)
        info = self.info
        return ExportSummary(
            run_dir=str(info.run_dir),
            out=str(self.out_dir),
            student=info.student,
            checkpoint=str(info.checkpoint),
            checkpoint_sha256=info.checkpoint_sha256,
            input_size=list(info.data_config.input_size),
            artifacts=self.artifacts,
            skipped=self.skipped,
            performance=notes,
            performance_how=(
                "each file in its runtime on this CPU (ONNX Runtime CPUExecutionProvider, ExecuTorch XNNPACK, LiteRT"
                " interpreter), batch 1, median of 20 runs after 3 warm-up"
            ),
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
