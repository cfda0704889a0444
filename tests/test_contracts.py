"""Contract tests that loop over each registry: a new method, dataset layout, runner, profile or export
recipe is exercised here without a new test. And the registries drive what the CLI offers: an entry
registered at run time shows up in the help texts and in the sweep's `all`."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from dait_edge.cli import cli
from dait_edge.data import DATASETS, load_dataset
from dait_edge.errors import UserError
from dait_edge.export.api import export_run
from dait_edge.export.mobile import backend_for
from dait_edge.export.recipes import RECIPES_DIR, load_recipe
from dait_edge.methods import METHODS, MethodContext
from dait_edge.methods.batch import Batch, Step
from dait_edge.models import STUDENTS, build_model
from dait_edge.profiling.api import find_artifacts, profile_artifacts
from dait_edge.profiling.profiles import PROFILES_DIR, available_profiles, load_profile
from dait_edge.profiling.runner import RUNNERS, Runner, register_runner, runners
from dait_edge.profiling.timing import Timed, measure
from dait_edge.records import DistillConfig, ExportSummary, Sidecar
from dait_edge.sweep import all_students, resolve_students
from dait_edge.vlm.provider import LiveVLM

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RECIPES = sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


@contextlib.contextmanager
def registered(registry, name: str, obj, description: str = ""):
    registry.register(name, description)(obj)
    try:
        yield obj
    finally:
        registry.unregister(name)


# ----------------------------------------------------------------------------------- methods


@pytest.fixture(scope="module")
def tiny_vlm_and_text(tiny_vlm):
    from dait_edge.vlm import load_vlm, text_classifier

    vlm = load_vlm(str(tiny_vlm.config), str(tiny_vlm.weights))
    return vlm, text_classifier(vlm, ["a", "b", "c", "d"], ["a photo of a {}."], use_cache=False)


def build_method(name: str, tiny_vlm_and_text):
    """Any registered method, built on tiny timm models with what its `requirements` ask for (a task teacher
    and the intermediate teacher are both a tiny ResNet here), around the student it trains."""
    cls = METHODS.get(name)
    torch.manual_seed(0)
    vlm, text = tiny_vlm_and_text
    needs = cls.requirements({})
    provider = None
    if "vlm" in needs:
        provider = LiveVLM(vlm, text, MEAN, STD)
        if cls.text_gaussian:
            provider.set_text_gaussian(text, torch.full_like(text, 1e-3))
        if cls.anchor_phrases:  # each class's anchors: its text embedding, turned a little per phrase
            turns = torch.randn(len(cls.anchor_phrases), text.shape[1])
            provider.set_text_anchors(F.normalize(text[:, None] + 0.3 * turns[None], dim=-1))
    context = MethodContext(
        4,
        MEAN,
        STD,
        teacher=build_model("test_resnet", 4, pretrained=False, role="teacher")
        if needs & {"teacher", "task_teacher"}
        else None,
        vlm=provider,
    )
    return cls(cls.wrap_student(build_model("test_efficientnet", 4, pretrained=False), context), context)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_trains_with_finite_terms_and_frozen_teachers(name, tiny_vlm_and_text):
    method = build_method(name, tiny_vlm_and_text)
    frozen = {k: v.clone() for k, v in method.state_dict().items() if k not in method.trainable_state_dict()}
    optimiser = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=3e-3)
    generator = torch.Generator().manual_seed(1)
    images, labels = torch.randn(8, 3, 32, 32, generator=generator), torch.arange(8) % 4
    method.train()
    losses = []
    for step in range(6):  # a few steps on one batch: the objective must go down
        out = method(Batch.of(images, labels), Step(epoch=0, step=step, alpha=0.5))
        terms = {k: v for k, v in out.items() if k.startswith("loss")}
        assert "loss" in terms and len(terms) > 1, terms  # the total and the terms it is made of
        assert all(torch.isfinite(v).all() for v in terms.values()), terms
        assert out["logits"].shape == (8, 4)
        optimiser.zero_grad()
        out["loss"].backward()
        optimiser.step()
        losses.append(out["loss"].item())
    assert losses[-1] < losses[0], losses
    for key, value in method.state_dict().items():  # teachers (and their BN statistics) never move
        if key in frozen:
            assert torch.equal(value, frozen[key]), key
    assert all(not module.training for module in method.frozen_modules())


STUDENT_METHODS = [name for name in METHODS if METHODS.get(name).stage == 2]


@pytest.fixture(scope="module")
def method_runs(tmp_path_factory):
    return tmp_path_factory.mktemp("method_runs")


@pytest.mark.parametrize("name", STUDENT_METHODS)
def test_every_method_trains_an_epoch_with_half_the_labels(
    name, method_runs, tiny_cub, tiny_vlm, tiny_config
):
    """`dait-edge distill --method NAME --labelled-fraction 0.5` on a fixture tree: labelled images get every
    term, unlabelled ones only the distillation terms (a method without any skips them)."""
    from dait_edge.distill import run_distill
    from dait_edge.records import read_metrics

    cls = METHODS.get(name)
    config = tiny_config(
        tiny_cub.root,
        tiny_vlm.config,
        tiny_vlm.weights,
        method_runs,
        method=name,
        stage1_epochs=1,
        stage2_epochs=1,
        labelled_fraction=0.5,
        out=method_runs / name,
    )
    summary = run_distill(config)
    assert summary.completed and summary.student_top1 is not None
    # half of each class's 4 images; every method holds the same validation share (0.1) out of them
    assert summary.labelled_images + summary.val_images == 6
    assert summary.val_images == round(DistillConfig().val_fraction * 6)
    unlabelled = 6 if cls.learns_from_unlabelled else 0
    assert summary.unlabelled_images == unlabelled
    assert summary.train_images == summary.labelled_images + unlabelled
    two_stage = "teacher" in cls.requirements({})
    assert (method_runs / name / "stage1").exists() == two_stage
    lines = [m for m in read_metrics(method_runs / name) if m.stage == 2]
    assert len(lines) == 1 and "loss" in lines[0].losses
    assert all(np.isfinite(v) for v in lines[0].losses.values()), lines[0].losses


# ----------------------------------------------------------------------------------- datasets


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_dataset_layout_has_a_fixture_and_reads(name, layouts, tmp_path):
    assert name in layouts.by_name, f"add a builder of {name}'s on-disk layout to tests/conftest.py"
    fixture = layouts.by_name[name](tmp_path)
    spec = load_dataset(name, fixture.root)
    assert spec.classes == fixture.classes and len(spec.split("train")) == fixture.train
    assert len(spec.split("test")) == fixture.test and spec.prompt_templates


# ----------------------------------------------------------------------------------- runners


def _profile_for(runtime: str):
    """A shipped profile of `runtime` (the contract runs each runner through a real profile)."""
    for name in available_profiles():
        profile = load_profile(name)
        if profile.runtime == runtime:
            return dataclasses.replace(profile, warmup=1, iterations=2, threads=1)
    pytest.fail(f"no profile in profiles/ uses runtime {runtime!r}: add one")


@pytest.mark.parametrize("runtime", list(runners()))
def test_every_runner_keeps_the_lifecycle(runtime, exported_run, tiny_cub):
    cls = RUNNERS.get(runtime)
    assert issubclass(cls, Runner) and cls.runtime == runtime and cls.suffixes and RUNNERS.describe(runtime)
    profile = _profile_for(runtime)
    try:
        versions = cls.require(profile)
    except UserError as err:  # the runtime or its device is missing here: one line that says what to do
        assert "\n" not in str(err) and ("install" in str(err) or "GPU" in str(err)), err
        return
    assert all(isinstance(v, str) for v in versions.values())
    artifact = find_artifacts([cls.in_run(exported_run)], profile)[0]  # where a run keeps what it measures
    runner = cls(artifact, profile)
    assert not runner.is_active
    with runner:
        assert runner.is_active and runner.modes and isinstance(runner.sidecar, Sidecar)
        with pytest.raises(RuntimeError, match="already active"):
            runner.activate()
        images = np.random.default_rng(0).standard_normal((3, *runner.sidecar.input_size), dtype=np.float32)
        logits = runner.infer(images)
        assert logits.shape == (3, tiny_cub.num_classes) and np.isfinite(logits).all()
        timed = runner.timed(1, runner.modes[0])
        assert (
            isinstance(timed, Timed)
            and not timed.skip
            and timed.backend.startswith(runtime.split("-")[0][:4])
        )
        latency = measure(timed.run_once, warmup=1, iterations=2, sync=timed.sync)
        assert latency.samples == 2 and latency.p50 > 0
        assert runner.label(timed.backend).startswith(runner.sidecar.format)
        memory = runner.device_memory_mb()
        assert memory is None or memory > 0
    assert not runner.is_active


def test_adding_a_runtime_is_one_class(tmp_path, sidecar):
    """A runner registered under a new runtime name is all a profile needs to measure its files."""

    class EchoRunner(Runner):
        suffixes = (".echo",)

        def activate_impl(self):
            self.sidecar = Sidecar.read_for(self.artifact)
            self.providers = ["cpu"]

        def deactivate_impl(self):
            pass

        def infer(self, images):
            return images.reshape(len(images), -1)[:, :3]

        def timed(self, batch, mode):
            return Timed(lambda: None, "echo")

    artifact = tmp_path / "export" / "student.echo"
    artifact.parent.mkdir()
    artifact.write_bytes(b"echo")
    sidecar(format="echo-fp32", runtime="echo").write_for(artifact)
    profile_file = tmp_path / "echo-cpu.toml"
    profile_file.write_text('name = "echo-cpu"\nruntime = "echo"\niterations = 3\nwarmup = 0\n')
    register_runner("echo", "echoes its input")(EchoRunner)  # what a runner module does on import
    try:
        assert EchoRunner.runtime == "echo"
        result = profile_artifacts(
            [tmp_path], load_profile(str(profile_file)), save=False, log=lambda m: None
        )
        assert [(r.format, r.backend, r.label) for r in result.rows] == [("echo-fp32", "echo", "echo-fp32")]
        listed = CliRunner().invoke(cli, ["list", "runtimes"])
        assert "echo" in listed.stdout and "echoes its input (.echo)" in listed.stdout
    finally:
        RUNNERS.unregister("echo")
    with pytest.raises(
        UserError, match="runtime must be one of executorch, litert, onnxruntime, tensorrt, torch"
    ):
        load_profile(str(profile_file))


# ----------------------------------------------------------------------------------- profiles


@pytest.mark.parametrize("name", available_profiles())
def test_every_profile_loads_and_measures_where_it_can(name, exported_run):
    profile = load_profile(name)
    known_formats = set(RECIPES) | {"checkpoint"}
    assert profile.runtime in runners() and profile.description and profile.device
    assert set(profile.formats) <= known_formats, set(profile.formats) - known_formats
    cls = runners().get(profile.runtime)
    try:
        cls.require(profile)
    except UserError as err:
        assert "\n" not in str(err)
        return
    quick = dataclasses.replace(profile, warmup=1, iterations=2, threads=1)
    artifacts = find_artifacts([exported_run], quick)
    with cls(artifacts[0], quick) as runner:  # the first way it measures (compiling is its own test)
        timed = runner.timed(profile.batch_sizes[0], runner.modes[0])
        if not timed.skip:
            assert measure(timed.run_once, warmup=1, iterations=2, sync=timed.sync).p50 > 0


# ----------------------------------------------------------------------------------- export recipes


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_cub, fake_run):
    return fake_run(tmp_path_factory.mktemp("recipes"), "test_efficientnet", tiny_cub)


# The on-device formats the session's exported run does not hold, and the test that builds each.
BUILT_ELSEWHERE = {
    "executorch-int8": ("test_mobile_runtimes.py", "test_int8_over_its_budget_keeps_the_worst_module_float"),
    "litert-fp32": ("test_bench_tool.py", "test_bench_prints_ratios_that_match_its_own_figures"),
}


@pytest.mark.parametrize("name", RECIPES)
def test_every_export_recipe_builds_or_says_why_not(name, tiny_run, tmp_path, exported_run):
    recipe = load_recipe(name)
    assert recipe.name == name and recipe.description
    if recipe.mobile:
        # built once per session into `exported_run` (the same tiny student) where its extra is installed;
        # test_mobile_runtimes checks those files
        try:
            backend_for(recipe).require()
        except UserError as err:
            assert "pip install 'dait-edge[" in str(err) and "\n" not in str(err)
            return
        built = {a.format: a for a in ExportSummary.read(exported_run / "export").artifacts}
        if name not in built:  # lowering costs seconds: each on-device format is built once in the suite
            test_file, test_name = BUILT_ELSEWHERE[name]
            assert f"def {test_name}(" in (Path(__file__).parent / test_file).read_text(), (name, test_name)
            return
        sidecar = Sidecar.verified_for(built[name].path)
        assert (
            sidecar.format == name
            and sidecar.precision == recipe.precision
            and sidecar.runtime == recipe.kind
        )
        assert sidecar.parity.passed or not recipe.parity_fatal
        return
    out = tmp_path / "out"
    said: list[str] = []
    summary = export_run(
        tiny_run,
        formats=name,
        out=out,
        calib_samples=4,
        parity_samples=6,
        measure_speed=False,
        log=said.append,
    )
    assert ExportSummary.read(out) == summary
    if recipe.kind == "trt" and summary.skipped:  # no TensorRT or GPU here: one line, nothing half-built
        said = [
            line for line in said if not line.startswith("warning: int8 accuracy")
        ]  # 18 images: unchecked
        assert summary.skipped == said and name in said[0] and not list(out.glob("*.engine"))
        return
    (artifact,) = [a for a in summary.artifacts if a.format == name]
    sidecar = Sidecar.read_for(artifact.path)
    assert sidecar.format == name and sidecar.precision == recipe.precision
    assert Path(artifact.path).is_file() and Path(artifact.path).stat().st_size > 0
    if recipe.kind == "onnx":
        assert sidecar.parity is not None and sidecar.parity.samples == 6
        assert sidecar.parity.passed or not recipe.parity_fatal


# ----------------------------------------------------------------------------------- the CLI surface


def _tiny_student(num_classes: int, **kwargs):
    return build_model("test_resnet", num_classes, **kwargs)


def test_a_registered_student_joins_the_help_and_the_sweeps_all():
    before = all_students()
    with registered(STUDENTS, "tiny_registered_student", _tiny_student, "a student registered by a test"):
        assert all_students() == [*before, "tiny_registered_student"]
        assert resolve_students("all") == all_students()
        for command in ("distill", "sweep"):
            help_text = " ".join(CliRunner().invoke(cli, [command, "--help"]).output.split())
            assert "tiny_registered_student" in help_text, command
        listed = CliRunner().invoke(cli, ["list", "students"]).stdout
        assert "tiny_registered_student  a student registered by a test" in listed
    assert "tiny_registered_student" not in all_students()


def test_a_registered_method_and_dataset_and_profile_join_the_help(tmp_path, monkeypatch):
    class NoDistillation(METHODS.get("dait_l")):
        """A method registered by a test."""

    shipped = list(PROFILES_DIR.glob("*.toml"))
    for path in shipped:
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "tinyboard.toml").write_text('name = "tinyboard"\nruntime = "onnxruntime"\n')
    monkeypatch.setattr("dait_edge.profiling.profiles.PROFILES_DIR", tmp_path)
    with (
        registered(METHODS, "test_method", NoDistillation),
        registered(DATASETS, "test_layout", lambda root: None, "a layout registered by a test"),
    ):
        distill = " ".join(CliRunner().invoke(cli, ["distill", "--help"]).output.split())
        assert "test_method: A method registered by a test." in distill and "test_layout" in distill
        sweep = " ".join(CliRunner().invoke(cli, ["sweep", "--help"]).output.split())
        assert "tinyboard" in sweep and "test_layout" in sweep
        profile = " ".join(CliRunner().invoke(cli, ["profile", "--help"]).output.split())
        assert "tinyboard" in profile and "test_layout" in profile
    assert "test_method" not in " ".join(CliRunner().invoke(cli, ["distill", "--help"]).output.split())


def test_export_formats_come_from_the_recipe_files(tmp_path, monkeypatch):
    for path in RECIPES_DIR.glob("*.toml"):
        (tmp_path / path.name).write_text(path.read_text())
    text = (
        (RECIPES_DIR / "onnx-fp32.toml")
        .read_text()
        .replace('name = "onnx-fp32"', 'name = "onnx-fp32-opset17"')
    )
    (tmp_path / "onnx-fp32-opset17.toml").write_text(text.replace("opset = 18", "opset = 17"))
    monkeypatch.setattr("dait_edge.export.recipes.RECIPES_DIR", tmp_path)
    assert load_recipe("onnx-fp32-opset17").opset == 17
    assert "onnx-fp32-opset17" in " ".join(CliRunner().invoke(cli, ["export", "--help"]).output.split())


# Flags whose meaning differs by command, so each declares its own (an output folder, a count of epochs;
# the demo's --seed also seeds a second comparison seed).
PER_COMMAND = {"--out", "--epochs", "--data-root", "--json", "--batch-size", "--profile", "--seed"}


def test_an_option_shared_by_commands_is_declared_once():
    """Every other flag several commands take reads the same in each --help: one declaration, reused."""
    import click

    declared: dict[str, dict[str, str]] = {}

    def walk(group, prefix=""):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                walk(command, f"{prefix}{name} ")
                continue
            for param in command.params:
                if isinstance(param, click.Option):
                    text = getattr(param, "help_from", None) or param.help
                    declared.setdefault(max(param.opts, key=len), {})[prefix + name] = str(text)

    walk(cli)
    shared = {flag: by_command for flag, by_command in declared.items() if len(by_command) > 1}
    assert {"--calib-samples", "--parity-samples", "--max-top1-drop", "--dataset"} <= set(shared)
    for flag, by_command in shared.items():
        if flag not in PER_COMMAND:
            assert len(set(by_command.values())) == 1, (flag, by_command)


def test_every_method_own_setting_is_a_run_setting_that_leaves_the_teacher_cache_key_alone():
    """A method's own settings (`Distiller.own_settings`) reach it through method_options, are compared only
    among its own runs, and, being stage-2 settings, never retrain an intermediate teacher."""
    from dait_edge.distill.context import method_options
    from dait_edge.distill.teacher_cache import STAGE2_ONLY
    from dait_edge.methods import METHODS
    from dait_edge.records.config import FIELDS, DistillConfig

    options = method_options(DistillConfig())
    for name in METHODS:
        own = METHODS.get(name).own_settings
        assert own <= FIELDS and own <= STAGE2_ONLY, (name, own)
        assert all(options[setting] == getattr(DistillConfig(), setting) for setting in own), name
    assert {"sra_form", "kd_weights"} <= set(options)


@pytest.mark.parametrize("recipe", ["shared", "own", "dho", "rise", "borlan"])
def test_every_recipe_fills_only_what_is_open_and_is_recorded_and_read_back(recipe, tmp_path):
    """For every method: `--recipe` resolves (own: the method's, else the shared one), fills the protocol
    settings left open, keeps one given (lr here), and the manifest holds the name and the values used."""
    from dait_edge.distill.manifest import hardware
    from dait_edge.methods.base import recipes, training_recipe
    from dait_edge.records import RunManifest
    from dait_edge.records.recipe import RECIPE_SETTINGS, SHARED

    assert recipe in recipes() or recipe == "own"
    for method in METHODS:
        chosen = training_recipe(recipe, method)
        if recipe == "own":
            assert chosen is (METHODS.get(method).recipe or SHARED)
        config = DistillConfig(
            dataset="cub", data_root="/d", method=method, recipe=recipe, stage2_epochs=10, lr=0.5
        )
        config.apply_recipe(chosen)
        expected = {k: v for k, v in chosen.settings(10).items() if v is not None} | {"lr": 0.5}
        assert {k: getattr(config, k) for k in expected} == expected, (recipe, method)
        assert config.recipe == chosen.name and all(
            getattr(config, k) is not None for k in RECIPE_SETTINGS if k != "lr_step"
        )
        manifest = RunManifest(config, 0, {}, None, hardware(torch.device("cpu"), 1), "now")
        manifest.write(tmp_path)
        assert RunManifest.read(tmp_path).config == config
    with pytest.raises(UserError, match="unknown recipe 'fast'.*dho"):
        training_recipe("fast", "dait_f")
