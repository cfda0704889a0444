"""The methods' contracts: what trains, what stays frozen, what the loss is made of."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dait_edge.losses import ira_loss, kd_loss, sia_loss, sra_loss
from dait_edge.methods import METHODS, MethodContext
from dait_edge.methods.batch import Batch, Step
from dait_edge.models import build_model
from dait_edge.vlm import load_vlm, text_classifier
from dait_edge.vlm.provider import LiveVLM

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NUM_CLASSES = 4


@pytest.fixture(scope="module")
def vlm_and_text(tiny_vlm_files, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vlm")
    config = tiny_vlm_files.config(folder)
    tiny_vlm_files.checkpoint(config, folder / "w.safetensors", seed=2)
    vlm = load_vlm(str(config), str(folder / "w.safetensors"))
    text = text_classifier(
        vlm, [f"class {i}" for i in range(NUM_CLASSES)], ["a photo of a {}."], use_cache=False
    )
    return vlm, text


def _batch(seed=0, size=32):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, size, size, generator=generator), torch.tensor([0, 1, 2, 3])


def _stage1(vlm_and_text, teacher_name="resnet18", **options):
    vlm, text = vlm_and_text
    teacher = build_model(teacher_name, NUM_CLASSES, pretrained=False, role="teacher")
    context = MethodContext(
        NUM_CLASSES, MEAN, STD, tau=2.0, vlm=LiveVLM(vlm, text, MEAN, STD), options=options
    )
    return METHODS.get("dait_stage1")(teacher, context)


def run(method, images, labels, alpha):
    """One forward pass on a fully labelled batch at step 0 of epoch 0."""
    return method(Batch.of(images, labels), Step(epoch=0, step=0, alpha=alpha))


def test_stage1_gradients_reach_teacher_and_both_mlps_not_the_vlm(vlm_and_text):
    method = _stage1(vlm_and_text)
    method.train()
    images, labels = _batch()
    out = run(method, images, labels, 0.3)
    out["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.mlp_img.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.mlp_txt.parameters())
    teacher_grads = [p.grad for p in method.student.parameters()]
    assert all(g is not None for g in teacher_grads) and sum(g.abs().sum() for g in teacher_grads) > 0
    assert all(p.grad is None and not p.requires_grad for p in method.vlm.parameters())
    assert not method.vlm.training  # train() does not wake the frozen VLM


def test_stage1_loss_is_the_documented_combination(vlm_and_text):
    method = _stage1(vlm_and_text)
    method.eval()  # deterministic BN for recomputing the terms
    images, labels = _batch(1)
    alpha = 0.25
    out = run(method, images, labels, alpha)
    with torch.no_grad():
        vlm_img = method.vlm.vlm.encode_images(images, MEAN, STD)
        parts = method.student.forward_all(images)
        f_model = F.normalize(parts["pooled"], dim=-1)
        f_img = F.normalize(method.mlp_img(vlm_img), dim=-1)
        f_txt = F.normalize(method.mlp_txt(method.vlm.text_embeddings), dim=-1)
        sia = sia_loss(vlm_img, method.vlm.text_embeddings, f_model, f_txt, tau=2.0)
        ira = ira_loss(f_model, f_img)
        ce = F.cross_entropy(parts["logits"], labels)
    torch.testing.assert_close(out["loss_sia"], sia)
    torch.testing.assert_close(out["loss_ira"], ira)
    torch.testing.assert_close(out["loss_ce"], ce)
    torch.testing.assert_close(out["loss"], alpha * ce + (1 - alpha) / 2 * (0.5 * sia + ira))  # w_SIA = 0.5


def _stage2(method_name, student_name="mobilenetv2", teacher_name="resnet18", options=None):
    teacher = build_model(teacher_name, NUM_CLASSES, pretrained=False, role="teacher")
    student = build_model(student_name, NUM_CLASSES, pretrained=False)
    context = MethodContext(NUM_CLASSES, MEAN, STD, tau=2.0, teacher=teacher, options=dict(options or {}))
    return METHODS.get(method_name)(student, context)


@pytest.mark.parametrize("method_name", ["dait_f", "dait_l"])
def test_stage2_teacher_is_frozen_and_student_learns(method_name):
    method = _stage2(method_name)
    teacher_before = {k: v.clone() for k, v in method.teacher.state_dict().items()}
    optimiser = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-2)
    method.train()
    assert not method.teacher.training
    images, labels = _batch(2)
    out = run(method, images, labels, 0.5)
    out["loss"].backward()
    assert all(p.grad is None for p in method.teacher.parameters())
    assert all(not p.requires_grad for p in method.teacher.parameters())
    assert sum(p.grad.abs().sum() for p in method.student.parameters() if p.grad is not None) > 0
    optimiser.step()
    for key, value in method.teacher.state_dict().items():  # BN running stats included
        assert torch.equal(value, teacher_before[key]), key
    assert all(
        key.startswith("student.") or key.startswith("adapter.") for key in method.trainable_state_dict()
    )


def test_dait_f_adapter_is_training_only_and_resizes():
    method = _stage2("dait_f", student_name="mobilenetv2", teacher_name="regnety_016")
    assert method.adapter.in_channels == method.student.feature_channels
    assert method.adapter.out_channels == method.teacher.feature_channels == 888
    assert "adapter.weight" in method.trainable_state_dict()
    assert not any("adapter" in key for key in method.student.state_dict())
    method.eval()
    images, labels = _batch(3, size=64)
    out = run(method, images, labels, 0.2)
    with torch.no_grad():
        teacher_map = method.teacher.forward_features(images)
        student_map = method.adapter(method.student.forward_features(images))
        if student_map.shape[-2:] != teacher_map.shape[-2:]:
            student_map = F.interpolate(
                student_map, size=teacher_map.shape[-2:], mode="bilinear", align_corners=False
            )
        ce = F.cross_entropy(method.student(images), labels)
    assert method.sra_form == "pearson"  # the default (README: DAIT-F's feature term)
    torch.testing.assert_close(out["loss_sra"], sra_loss(student_map, teacher_map, "pearson"))
    torch.testing.assert_close(out["loss"], 0.2 * ce + 0.8 * sra_loss(student_map, teacher_map, "pearson"))


@pytest.mark.parametrize("form", ["paper", "standardised", "pearson"])
def test_dait_f_compares_the_maps_as_its_option_says(form):
    method = _stage2(
        "dait_f", student_name="shufflenetv2", teacher_name="resnet18", options={"sra_form": form}
    )
    method.eval()
    images, labels = _batch(4, size=64)
    with torch.no_grad():
        out = run(method, images, labels, 0.0)
        adapted = method.adapter(method.student.forward_features(images))
        teacher_map = method.teacher.forward_features(images)
    torch.testing.assert_close(out["loss"], sra_loss(adapted, teacher_map, form))
    if form == "paper":  # method.md's formula, exactly
        torch.testing.assert_close(out["loss"], F.mse_loss(adapted, teacher_map))


def test_dait_f_resizes_when_maps_differ():
    method = _stage2("dait_f", student_name="shufflenetv2", teacher_name="resnet18")
    method.eval()
    images, labels = _batch(4, size=64)  # the student's map is 2x2; pretend the teacher's is 5x5
    teacher_map = torch.randn(4, method.teacher.feature_channels, 5, 5)
    method.teacher.forward_features = lambda x: teacher_map
    with torch.no_grad():
        out = run(method, images, labels, 0.0)
        adapted = method.adapter(method.student.forward_features(images))
        resized = F.interpolate(adapted, size=(5, 5), mode="bilinear", align_corners=False)
    assert adapted.shape[-2:] == (2, 2)
    torch.testing.assert_close(out["loss"], sra_loss(resized, teacher_map, method.sra_form))


def test_dait_l_loss_is_kd_on_teacher_logits():
    method = _stage2("dait_l")
    method.eval()
    images, labels = _batch(5)
    out = run(method, images, labels, 0.4)
    with torch.no_grad():
        kd = kd_loss(method.student(images), method.teacher(images), tau=2.0)
        ce = F.cross_entropy(method.student(images), labels)
    torch.testing.assert_close(out["loss_kd"], kd)
    torch.testing.assert_close(out["loss"], 0.4 * ce + 0.6 * kd)


def _kd_reference(
    student: np.ndarray, teacher: np.ndarray, labels: np.ndarray, tau: float
) -> tuple[float, float]:
    """(CE, tau^2 * batch-mean KL(p_T || p_S)) written out in numpy."""

    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    ce = -log_softmax(student)[np.arange(len(labels)), labels].mean()
    log_t, log_s = log_softmax(teacher / tau), log_softmax(student / tau)
    kl = (np.exp(log_t) * (log_t - log_s)).sum(axis=1).mean()
    return float(ce), float(tau**2 * kl)


@pytest.mark.parametrize(
    ("setting", "alpha", "weights"),
    [
        ("constant", 0.4, (1.0, 1.0)),
        ("0.1,0.9", 0.4, (0.1, 0.9)),
        ("alpha", 0.4, (0.4, 0.6)),
        ("constant", 1.0, (1, 1)),
    ],
)
def test_kd_weighs_its_terms_as_kd_weights_says(setting, alpha, weights):
    method = _stage2("kd", options={"kd_teacher": "task.safetensors", "kd_weights": setting})
    method.eval()
    images, labels = _batch(5)
    out = run(method, images, labels, alpha)
    with torch.no_grad():
        ce, kd = _kd_reference(
            method.student(images).double().numpy(),
            method.teacher(images).double().numpy(),
            labels.numpy(),
            2.0,
        )
    assert out["loss_kd"].item() == pytest.approx(kd, rel=1e-4)  # constant weights keep KD on at alpha 1
    assert out["loss"].item() == pytest.approx(weights[0] * ce + weights[1] * kd, rel=1e-4)


def test_kd_weights_setting_is_checked():
    from dait_edge.records.config import term_weights

    assert term_weights("alpha") is None and term_weights(" Constant ") == (1.0, 1.0)
    assert term_weights("0.1,0.9") == (0.1, 0.9)
    for bad in ("often", "1", "1,2,3", "-1,1", "0,0"):
        with pytest.raises(ValueError):
            term_weights(bad)


def test_teacher_sees_its_own_normalisation():
    from dait_edge.methods.teacher_input import TeacherInput

    teacher = build_model("resnet18", NUM_CLASSES, pretrained=False, role="teacher")
    teacher.data_config = dataclasses.replace(teacher.data_config, mean=[0.5] * 3, std=[0.25] * 3)
    convert = TeacherInput(MethodContext(NUM_CLASSES, MEAN, STD), teacher)
    pixels = torch.rand(2, 3, 8, 8)
    student_view = (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(convert(student_view), (pixels - 0.5) / 0.25)
    same = TeacherInput(MethodContext(NUM_CLASSES, MEAN, STD), build_model("resnet18", 2, pretrained=False))
    assert same.identity


def test_methods_need_their_teachers():
    student = build_model("mobilenetv2", NUM_CLASSES, pretrained=False)
    with pytest.raises(ValueError, match="teacher"):
        METHODS.get("dait_f")(student, MethodContext(NUM_CLASSES, MEAN, STD))


@pytest.mark.parametrize("method_name", ["dait_stage1", "dait_f", "dait_l"])
def test_at_alpha_one_the_teachers_are_not_run(method_name, vlm_and_text):
    """alpha = 1 weighs the distillation terms by zero: the loss is the CE alone, so the frozen teacher (or
    VLM) is not run at all, which halves the late epochs of a short schedule."""
    method = _stage1(vlm_and_text) if method_name == "dait_stage1" else _stage2(method_name)
    frozen = method.vlm if method_name == "dait_stage1" else method.teacher

    def refuse(*args, **kwargs):
        raise AssertionError("the frozen teacher ran at alpha = 1")

    method.eval()
    images, labels = _batch(6)
    frozen.forward = frozen.forward_features = frozen.image_embeddings = refuse
    out = run(method, images, labels, 1.0)
    assert set(out) == {"loss", "logits", "loss_ce"}
    with torch.no_grad():
        ce = F.cross_entropy(method.student(images), labels)
    torch.testing.assert_close(out["loss"], ce)
    torch.testing.assert_close(out["loss_ce"], ce)
    # the training-only modules get a zero gradient, as at weight 0, not none: AdamW and DDP see them alike
    out["loss"].backward()
    idle = [(n, p) for n, p in method.named_parameters() if p.requires_grad and not n.startswith("student.")]
    assert bool(idle) == (method_name != "dait_l")  # an adapter (DAIT-F), two MLPs (stage 1), none (DAIT-L)
    assert all(p.grad is not None and not p.grad.any() for _, p in idle), [n for n, _ in idle]
    assert any(p.grad is not None and p.grad.any() for p in method.student.parameters())


def test_sia_weight_scales_only_the_sia_term(vlm_and_text):
    """w_SIA (default 0.5, VL2Lite's released code) weighs SIA alone; the terms themselves do not change."""
    images, labels = _batch(7)
    outs = {}
    for weight in (0.5, 2.0):
        torch.manual_seed(0)
        method = _stage1(vlm_and_text, sia_weight=weight)
        method.eval()
        outs[weight] = run(method, images, labels, 0.2)
    low, high = outs[0.5], outs[2.0]
    for term in ("loss_sia", "loss_ira", "loss_ce"):
        torch.testing.assert_close(low[term], high[term])
    torch.testing.assert_close(high["loss"] - low["loss"], 0.8 / 2 * (2.0 - 0.5) * low["loss_sia"])


def test_similarity_logits_stay_fp32_under_bf16_autocast():
    """At logit scale 1/0.07 bf16 would shift the SIA and KD logits by ~0.05; they are computed in fp32."""
    generator = torch.Generator().manual_seed(8)
    img, txt = (F.normalize(torch.randn(n, 16, generator=generator), dim=-1) for n in (6, 5))
    vlm_img, vlm_txt = (F.normalize(torch.randn(n, 16, generator=generator), dim=-1) for n in (6, 5))
    student, teacher = torch.randn(6, 5, generator=generator), torch.randn(6, 5, generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sia, kd = sia_loss(vlm_img, vlm_txt, img, txt), kd_loss(student, teacher)
    assert sia.dtype == kd.dtype == torch.float32
    torch.testing.assert_close(sia, sia_loss(vlm_img, vlm_txt, img, txt), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(kd, kd_loss(student, teacher), rtol=1e-6, atol=1e-6)


def _rise(vlm_and_text, **options):
    from dait_edge.methods.rise import RISE_ANCHORS

    vlm, text = vlm_and_text
    provider = LiveVLM(vlm, text, MEAN, STD)
    turns = torch.randn(len(RISE_ANCHORS), text.shape[1], generator=torch.Generator().manual_seed(3))
    provider.set_text_anchors(F.normalize(text[:, None] + 0.5 * turns[None], dim=-1))
    context = MethodContext(NUM_CLASSES, MEAN, STD, vlm=provider, options=options)
    cls = METHODS.get("rise")
    torch.manual_seed(0)
    student = cls.wrap_student(build_model("mobilenetv2", NUM_CLASSES, pretrained=False), context)
    return cls(student, context)


def test_rise_classifies_in_the_text_space_from_a_text_initialised_fc(vlm_and_text):
    """RISE's student: fc(projector(pool)), fc's rows the class-text embeddings, the upstream classifier gone
    (no unused weights for DDP to wait on)."""
    method = _rise(vlm_and_text)
    student, text = method.student, vlm_and_text[1]
    assert student.projector.in_features == student.num_features and student.embed_dim == text.shape[1]
    torch.testing.assert_close(student.fc.weight.detach(), text.float())
    assert isinstance(student.base.model.get_classifier(), torch.nn.Identity)
    images, labels = _batch(8)
    student.eval()
    with torch.no_grad():
        pooled = student.pool(student.forward_features(images))
        torch.testing.assert_close(student(images), student.fc(student.projector(pooled)))
    out = run(method.train(), images, labels, 0.3)
    out["loss"].backward()
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    ("setting", "alpha", "weights"),
    [("1,1,1", 0.3, (1, 1, 1)), ("2,0.5,0.25", 0.0, (2, 0.5, 0.25)), ("alpha", 0.3, (0.7, 0.3, 1))],
)
def test_rise_loss_is_its_released_weighted_sum(vlm_and_text, setting, alpha, weights):
    """w1 tau^2 KL(VLM || student) at tau 3 + w2 CE + w3 (AD + RD), the parts computed here from the
    student's own embedding and the VLM's zero-shot logits."""
    from dait_edge.methods.rise import absolute_distance, relational_distance

    method = _rise(vlm_and_text, rise_weights=setting)
    method.eval()
    images, labels = _batch(9)
    out = run(method, images, labels, alpha)
    with torch.no_grad():
        student = method.student
        x_p = student.projector(student.pool(student.forward_features(images))).double()
        logits = student.fc(x_p.float()).double()
        teacher = method.vlm.zero_shot_logits(Batch.of(images, labels)).double()
        ce, kd = _kd_reference(logits.numpy(), teacher.numpy(), labels.numpy(), 3.0)
        text = method.vlm.text_embeddings[labels].double()
        ad = absolute_distance(x_p, text).mean().item()
        rd = relational_distance(x_p, text, method.vlm.text_anchors[labels].double()).mean().item()
    w_kd, w_ce, w_dist = weights
    assert (out["loss_ad"].item(), out["loss_rd"].item()) == (
        pytest.approx(ad, rel=1e-4),
        pytest.approx(rd, rel=1e-3),
    )
    assert out["loss"].item() == pytest.approx(w_kd * kd + w_ce * ce + w_dist * (ad + rd), rel=1e-4)


def test_rise_weights_setting_is_checked():
    from dait_edge.records.config import rise_weights

    assert rise_weights("alpha") is None and rise_weights("1,1,1") == (1.0, 1.0, 1.0)
    for bad in ("constant", "1,1", "-1,1,1", "0,0,0", "a,b,c"):
        with pytest.raises(ValueError):
            rise_weights(bad)


def test_borlan_relabels_its_unlabelled_images_in_eval_mode_once_per_epoch(vlm_and_text, layouts, tmp_path):
    """Before an epoch's first step: the classifier's argmax in eval mode on the view the epoch shows each
    unlabelled image (labelled ones keep none); the alignment of unlabelled samples then uses those."""
    from dait_edge.data import load_dataset
    from dait_edge.data.images import ImageListDataset
    from dait_edge.data.views import TrainViews, ViewSpec
    from dait_edge.methods.borlan import borlan_alignment

    vlm, text = vlm_and_text
    provider = LiveVLM(vlm, text, MEAN, STD)
    provider.set_text_gaussian(text, torch.full_like(text, 1e-3))
    torch.manual_seed(0)
    method = METHODS.get("borlan")(
        build_model("mobilenetv2", NUM_CLASSES, pretrained=False),
        MethodContext(NUM_CLASSES, MEAN, STD, vlm=provider),
    )
    data = layouts.cub(tmp_path / "cub", classes=2, train_per_class=3, test_per_class=1)
    samples = load_dataset("cub", data.root).split("train")
    views = TrainViews(ImageListDataset(samples), ViewSpec(32), 3, 4, MEAN, STD, labelled=[0, 3])

    def loader(keys):
        return torch.utils.data.DataLoader(views, batch_size=2, sampler=keys, collate_fn=Batch.collate)

    method.train()
    method.before_epoch(views, 2, loader)
    assert method.student.training and method.projection.training  # back to training mode
    unlabelled = [1, 2, 4, 5]
    with torch.no_grad():
        batch = Batch.collate([views[(j, 2)] for j in unlabelled])
        expected = method.student.eval()(batch.images).argmax(dim=-1)
    method.train()
    assert method.pseudo_labels[unlabelled].tolist() == expected.tolist()
    assert method.pseudo_labels[[0, 3]].tolist() == [-1, -1]
    # the unlabelled samples are aligned to the stored labels, whatever this batch's own argmax says
    method.pseudo_labels[unlabelled] = torch.tensor([1, 0, 3, 2])
    method.eval()
    out = method(batch, Step(epoch=2, step=0, alpha=0.0))
    with torch.no_grad():
        q = F.normalize(method.projection(method.student.forward_all(batch.images)["pooled"]), dim=-1)
        aligned = borlan_alignment(
            q, text.float(), torch.full_like(text, 1e-3), torch.tensor([1, 0, 3, 2]), 0.07
        )
    assert out["loss_align_unlabelled"].item() == pytest.approx(aligned.item(), rel=1e-5)


def test_borlan_gaussians_use_its_80_templates_with_its_prefix():
    from dait_edge.vlm.prompts import borlan_templates

    templates = borlan_templates()
    assert len(templates) == 80 and len(set(templates)) == 80
    assert templates[0] == "This is a bad photo of a {}." and "This is art of the {}." in templates
    assert "itap of a {}." in templates  # neither "a" nor "the" first: as written
