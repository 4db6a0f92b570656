"""Tests of the Xception model against the paper and the Keras reference layer sequence.

Each test names the porting bug it would catch (see docs/PAPER.md): wrong block-13
widths, conv biases, padded stem, missing/rectified shortcuts, ablation switches that do nothing,
dropout that is computed and thrown away, layout-dependent results. Sizes are kept tiny (width
0.125, one middle block, 32x32) except where the paper's full network is the point.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from xception import (
    ACTIVATIONS,
    Block,
    DepthwiseConv2d,
    PointwiseConv2d,
    SeparableConv2d,
    Xception,
    scale_channels,
    xception,
)

TINY = dict(width=0.125, middle_blocks=1)

PAPER_TRAINABLE = 22_855_952  # paper Table 3, 1000 classes
PAPER_TOTAL_WITH_RUNNING_STATS = 22_910_480  # Keras count: + BN moving mean/variance
BN_RUNNING_STATS = 54_528


@pytest.fixture(autouse=True)
def _one_thread():
    # The CI/dev machine has 2 cores shared with other jobs: keep every test single-threaded.
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def paper_model() -> Xception:
    torch.manual_seed(0)
    return Xception()


def _sep(cin: int, cout: int) -> list[tuple[int, ...]]:
    """Weights of one separable conv: depthwise 3x3 (multiplier 1), then pointwise 1x1."""
    return [(cin, 1, 3, 3), (cout, cin, 1, 1)]


def _short(cin: int, cout: int) -> list[tuple[int, ...]]:
    return [(cout, cin, 1, 1)]


# Written by hand from docs/PAPER.md's Keras layer sequence, in module order (main path first, then
# the shortcut of each residual module). Not derived from the model.
def expected_conv_shapes(residual: bool = True) -> list[tuple[int, ...]]:
    def short(cin: int, cout: int) -> list[tuple[int, ...]]:
        return _short(cin, cout) if residual else []

    return (
        [(32, 3, 3, 3), (64, 32, 3, 3)]  # stem: conv 32 3x3 s2 valid, conv 64 3x3 valid
        + _sep(64, 128) + _sep(128, 128) + short(64, 128)  # block 2
        + _sep(128, 256) + _sep(256, 256) + short(128, 256)  # block 3
        + _sep(256, 728) + _sep(728, 728) + short(256, 728)  # block 4
        + 8 * (_sep(728, 728) * 3)  # blocks 5-12, identity shortcut
        + _sep(728, 728) + _sep(728, 1024) + short(728, 1024)  # block 13: 728 THEN 1024
        + _sep(1024, 1536) + _sep(1536, 2048)  # block 14, no shortcut
    )


EXPECTED_CONV_SHAPES = expected_conv_shapes()
# One BN after every conv and separable conv, and after each shortcut conv.
EXPECTED_BN_WIDTHS: list[int] = (
    [32, 64]
    + [128, 128, 128]
    + [256, 256, 256]
    + [728, 728, 728]
    + [728] * 24
    + [728, 1024, 1024]
    + [1536, 2048]
)
# Parameters of the four conv shortcuts (1x1 conv weight + BN gamma and beta).
SHORTCUT_PARAMS = sum(cin * cout + 2 * cout for cin, cout in [(64, 128), (128, 256), (256, 728), (728, 1024)])


def _blocks(model: Xception) -> list[Block]:
    return [m for m in model.modules() if isinstance(m, Block)]


# --------------------------------------------------------------------------------------------
# The paper's network: parameter count and layer sequence
# --------------------------------------------------------------------------------------------


def test_paper_parameter_count(paper_model: Xception) -> None:
    trainable = sum(p.numel() for p in paper_model.parameters() if p.requires_grad)
    assert trainable == PAPER_TRAINABLE
    running = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in paper_model.modules()
        if isinstance(m, nn.BatchNorm2d)
    )
    assert running == BN_RUNNING_STATS
    assert trainable + running == PAPER_TOTAL_WITH_RUNNING_STATS
    # A bias in front of batch norm (the seed sketch's bug) would also change the count above.
    convs = [m for m in paper_model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.bias is None for m in convs)


def test_paper_layer_shapes(paper_model: Xception) -> None:
    conv_shapes = [tuple(m.weight.shape) for m in paper_model.modules() if isinstance(m, nn.Conv2d)]
    assert conv_shapes == EXPECTED_CONV_SHAPES
    bn_widths = [m.num_features for m in paper_model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn_widths == EXPECTED_BN_WIDTHS
    assert tuple(paper_model.fc.weight.shape) == (1000, 2048)
    assert paper_model.fc.bias is not None  # the classifier (logistic regression) keeps its bias
    # The trainable count is exactly these tensors: nothing extra is hidden anywhere.
    expected = (
        sum(math.prod(s) for s in EXPECTED_CONV_SHAPES)
        + 2 * sum(EXPECTED_BN_WIDTHS)
        + 2048 * 1000
        + 1000
    )
    assert expected == PAPER_TRAINABLE


def test_paper_has_36_conv_layers_in_14_modules(paper_model: Xception) -> None:
    blocks = _blocks(paper_model)
    assert len(blocks) == 12  # modules 2-13 are the residual ones
    assert all(b.shortcut is not None for b in blocks)
    shortcut_convs = {id(m) for b in blocks for m in (b.shortcut.modules() if b.shortcut else [])}
    main_convs = [
        m
        for m in paper_model.modules()
        if isinstance(m, nn.Conv2d) and id(m) not in shortcut_convs and m.groups == 1
        and m.kernel_size == (3, 3)
    ]
    seps = [m for m in paper_model.modules() if isinstance(m, SeparableConv2d)]
    assert len(main_convs) + len(seps) == 36
    # Separable convs are 3x3 "same", depth multiplier 1, and nothing sits between the two steps.
    for s in seps:
        assert s.depthwise.kernel_size == (3, 3) and s.depthwise.padding == (1, 1)
        assert s.depthwise.groups == s.depthwise.in_channels == s.depthwise.out_channels
        assert isinstance(s.act, nn.Identity)


def test_paper_feature_map_sizes_at_299() -> None:
    # Stem convs are valid (299 -> 149 -> 147) and every maxpool is 3x3 s2 "same" (147 -> 74 ...):
    # a padded stem (the seed's bug) gives 150 / 150 instead. Channel widths do not change sizes, so
    # a narrow model keeps this fast.
    torch.manual_seed(0)
    model = Xception(10, **TINY).eval()
    sizes: dict[str, tuple[int, int]] = {}
    for name in ("conv1", "conv2", "block2", "block3", "block4", "block13", "block14"):
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: sizes.__setitem__(name, tuple(o.shape[-2:]))
        )
    with torch.no_grad():
        model(torch.randn(1, 3, 299, 299))
    assert sizes == {
        "conv1": (149, 149),
        "conv2": (147, 147),
        "block2": (74, 74),
        "block3": (37, 37),
        "block4": (19, 19),
        "block13": (10, 10),
        "block14": (10, 10),
    }


@pytest.mark.slow
def test_paper_model_forward_299(paper_model: Xception) -> None:
    paper_model.eval()
    with torch.no_grad():
        out = paper_model(torch.randn(1, 3, 299, 299))
    assert out.shape == (1, 1000)
    assert torch.isfinite(out).all()


@pytest.mark.slow
def test_same_function_as_timm_legacy_xception() -> None:
    """With timm's weights copied in, ours computes exactly what timm's port computes."""
    timm = pytest.importorskip("timm")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = timm.create_model("legacy_xception", pretrained=False, num_classes=10)
    torch.manual_seed(0)
    ours = Xception(10, dropout=0.0)  # timm's default: no dropout, so training steps compare too

    def convs_bns(mod: nn.Module) -> list[nn.Module]:
        return [m for m in mod.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]

    pairs: list[tuple[list[nn.Module], list[nn.Module]]] = [
        ([ours.conv1, ours.bn1, ours.conv2, ours.bn2], [theirs.conv1, theirs.bn1, theirs.conv2, theirs.bn2]),
        (convs_bns(ours.block14), [*convs_bns(theirs.conv3), theirs.bn3, *convs_bns(theirs.conv4), theirs.bn4]),
    ]
    ours_blocks = [ours.block2, ours.block3, ours.block4, *ours.middle, ours.block13]
    for i, ob in enumerate(ours_blocks, start=1):
        tb = getattr(theirs, f"block{i}")
        pairs.append((convs_bns(ob.rep), convs_bns(tb.rep)))
        if tb.skip is not None:
            pairs.append((convs_bns(ob.shortcut), [tb.skip, tb.skipbn]))
    g = torch.Generator().manual_seed(0)
    for om, tm in pairs:
        assert len(om) == len(tm)
        for a, b in zip(om, tm):
            assert isinstance(a, type(b)) and a.weight.shape == b.weight.shape
            if isinstance(b, nn.BatchNorm2d):  # non-trivial BN state, so BN order matters too
                b.running_mean.normal_(0, 0.1, generator=g)
                b.running_var.uniform_(0.5, 1.5, generator=g)
                b.weight.data.uniform_(0.5, 1.5, generator=g)
                b.bias.data.normal_(0, 0.1, generator=g)
            a.load_state_dict(b.state_dict())
    ours.fc.load_state_dict(theirs.fc.state_dict())
    x = torch.randn(2, 3, 71, 71, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=1e-4, atol=1e-4)
        # And in channels_last, where our pointwise step takes its GEMM path.
        cl = torch.channels_last
        torch.testing.assert_close(
            ours.to(memory_format=cl)(x.contiguous(memory_format=cl)),
            theirs.to(memory_format=cl)(x.contiguous(memory_format=cl)),
            rtol=1e-4,
            atol=1e-4,
        )
    # A training step at 32x32, where the middle and exit flows run on 2x2 and 1x1 maps and both
    # CPU fast paths (pointwise GEMM, depthwise weight gradient) are taken: same gradients.
    x = torch.randn(4, 3, 32, 32, generator=g).contiguous(memory_format=cl)
    ours.train()(x).square().sum().backward()
    theirs.train()(x).square().sum().backward()
    for om, tm in pairs:
        for a, b in zip(om, tm):
            torch.testing.assert_close(a.weight.grad, b.weight.grad, rtol=1e-3, atol=1e-4)


# --------------------------------------------------------------------------------------------
# Residual ablation (paper Figure 9)
# --------------------------------------------------------------------------------------------


def test_no_residual_removes_exactly_the_shortcut_parameters(paper_model: Xception) -> None:
    torch.manual_seed(0)
    plain = Xception(residual=False)
    n_res = sum(p.numel() for p in paper_model.parameters())
    n_plain = sum(p.numel() for p in plain.parameters())
    assert n_res - n_plain == SHORTCUT_PARAMS
    blocks = _blocks(plain)
    assert len(blocks) == 12 and all(b.shortcut is None for b in blocks)
    assert all(set(dict(b.named_children())) == {"rep"} for b in blocks)  # no identity skip module either
    assert not any("shortcut" in name for name, _ in plain.named_parameters())
    conv_shapes = [tuple(m.weight.shape) for m in plain.modules() if isinstance(m, nn.Conv2d)]
    assert conv_shapes == expected_conv_shapes(residual=False)
    assert len(conv_shapes) == len(EXPECTED_CONV_SHAPES) - 4


@pytest.mark.parametrize("residual", [True, False])
def test_block_output_is_main_path_plus_shortcut_or_main_path_only(residual: bool) -> None:
    """Hooks on every block: output == rep(input) [+ shortcut(input)], computed by hand."""
    torch.manual_seed(0)
    model = Xception(10, residual=residual, width=0.125, middle_blocks=2).eval()
    seen: list[tuple[Block, torch.Tensor, torch.Tensor]] = []
    for b in _blocks(model):
        b.register_forward_hook(lambda m, i, o: seen.append((m, i[0].detach().clone(), o.detach().clone())))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
        assert len(seen) == 3 + 2 + 1
        for block, inp, out in seen:
            main = block.rep(inp.clone())
            if residual:
                expected = main + block.shortcut(inp.clone())
                assert not torch.allclose(out, main, atol=1e-3)  # the skip really contributes
            else:
                expected = main
            torch.testing.assert_close(out, expected)


# --------------------------------------------------------------------------------------------
# The shortcut reads the unrectified block input (the in-place ReLU porting bug)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["block3", "middle", "block13"])
def test_shortcut_reads_unrectified_input(which: str) -> None:
    torch.manual_seed(0)
    model = Xception(10, width=0.125, middle_blocks=1).eval()
    block = model.middle[0] if which == "middle" else getattr(model, which)
    assert isinstance(block.rep[0], nn.ReLU) and not block.rep[0].inplace
    cin = block.rep[1].depthwise.in_channels
    inp = torch.randn(2, cin, 8, 8)
    assert (inp < 0).any()
    original = inp.clone()
    received: list[torch.Tensor] = []
    block.shortcut.register_forward_hook(lambda m, i, o: received.append(i[0].detach().clone()))
    with torch.no_grad():
        out = block(inp)
        assert len(received) == 1
        assert (received[0] < 0).any(), "the shortcut was fed a rectified tensor"
        assert torch.equal(received[0], original)
        assert torch.equal(inp, original), "the block changed its input in place"
        # By hand from the submodules: shortcut(x) + (BN . sep ... ReLU(x)); no ReLU after the add.
        torch.testing.assert_close(out, block.rep(original) + block.shortcut(original))
        assert (out < 0).any()


def test_in_place_ops_do_not_break_backward() -> None:
    # An in-place op on a tensor autograd still needs raises at backward; run all variants.
    for residual in (True, False):
        for act in ACTIVATIONS:
            torch.manual_seed(0)
            model = Xception(10, residual=residual, activation=act, width=0.125, middle_blocks=1)
            x = torch.randn(2, 3, 32, 32, requires_grad=True)
            model(x).sum().backward()
            assert x.grad is not None and torch.isfinite(x.grad).all()


# --------------------------------------------------------------------------------------------
# Activation ablation (paper Figure 10)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation,kind", [("none", nn.Identity), ("relu", nn.ReLU), ("elu", nn.ELU)])
def test_activation_sits_between_depthwise_and_pointwise_everywhere(activation: str, kind: type) -> None:
    torch.manual_seed(0)
    model = Xception(10, activation=activation, width=0.125, middle_blocks=8).eval()
    seps = [m for m in model.modules() if isinstance(m, SeparableConv2d)]
    assert len(seps) == 34
    assert all(type(s.act) is kind for s in seps)
    pointwise_inputs: list[torch.Tensor] = []
    for s in seps:
        s.pointwise.register_forward_hook(lambda m, i, o: pointwise_inputs.append(i[0]))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert len(pointwise_inputs) == 34
    mins = torch.stack([t.min() for t in pointwise_inputs])
    if activation == "relu":
        assert (mins >= 0).all()
    elif activation == "elu":
        assert (mins >= -1).all() and (mins < 0).all()
    else:
        assert (mins < -1).any()  # a raw depthwise output, nothing applied


def test_invalid_activation_names_the_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"activation must be one of 'none', 'relu', 'elu'; got 'gelu'"):
        Xception(activation="gelu")
    with pytest.raises(ValueError, match="'none', 'relu', 'elu'"):
        SeparableConv2d(8, 8, activation="ReLU")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_classes=0), "num_classes"),
        (dict(in_channels=0), "in_channels"),
        (dict(width=0), "width"),
        (dict(width=float("nan")), "width"),
        (dict(middle_blocks=-1), "middle_blocks"),
        (dict(middle_blocks=2.0), "middle_blocks"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=-0.1), "dropout"),
        (dict(residual="no"), "residual"),
        (dict(activation=None), "activation"),
    ],
)
def test_invalid_arguments_raise_clear_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Xception(**kwargs)


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Xception(10, 3, False)  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# The 6 ablation variants train
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("residual", [True, False])
def test_each_ablation_variant_trains(residual: bool, activation: str) -> None:
    torch.manual_seed(0)
    model = Xception(10, residual=residual, activation=activation, dropout=0.0, **TINY).train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 32, 32, generator=g)
    y = torch.arange(8) % 10
    # lr 0.02: the plain (non-residual) variants are erratic at higher rates (cf. paper Figure 9).
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses


# --------------------------------------------------------------------------------------------
# Shapes, width, depth, channels, layout, determinism, dropout
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 71, 299])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_output_shapes(size: int, in_channels: int) -> None:
    torch.manual_seed(0)
    model = Xception(7, in_channels, **TINY).eval()
    assert model.conv1.in_channels == in_channels
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, 7)
    with torch.no_grad():
        feats = model.forward_head(model.forward_features(torch.randn(2, in_channels, size, size)), pre_logits=True)
    assert feats.shape == (2, model.num_features)


def test_width_and_middle_blocks() -> None:
    assert [scale_channels(c, 1.0) for c in (32, 64, 128, 256, 728, 1024, 1536, 2048)] == [
        32, 64, 128, 256, 728, 1024, 1536, 2048
    ]
    assert [scale_channels(c, 0.125) for c in (32, 64, 728, 2048)] == [8, 8, 88, 256]
    assert scale_channels(32, 0.01) == 8
    assert scale_channels(728, 0.5) % 8 == 0
    model = Xception(10, width=0.5, middle_blocks=0)
    assert len(model.middle) == 0 and len(_blocks(model)) == 4
    widths = {m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)}
    assert all(c % 8 == 0 for c in widths)
    assert model.fc.in_features == model.num_features == 1024
    assert xception(10, width=0.5, middle_blocks=3).middle_blocks == 3
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_same_seed_same_model_and_output() -> None:
    x = torch.randn(2, 3, 32, 32)
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = Xception(10, **TINY).eval()
        with torch.no_grad():
            outs.append(model(x))
    assert torch.equal(outs[0], outs[1])
    torch.manual_seed(124)
    with torch.no_grad():
        assert not torch.equal(Xception(10, **TINY).eval()(x), outs[0])


@pytest.mark.parametrize("train", [False, True])
def test_channels_last_matches_nchw(train: bool) -> None:
    torch.manual_seed(0)
    model = Xception(10, dropout=0.0, **TINY).train(train)
    x = torch.randn(4, 3, 32, 32)
    ref = model(x)
    ref_grads = torch.autograd.grad(ref.sum(), list(model.parameters()))
    cl_model = model.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    out = cl_model(x_cl)
    grads = torch.autograd.grad(out.sum(), list(cl_model.parameters()))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


def test_dropout_applies_in_train_mode_only() -> None:
    torch.manual_seed(0)
    model = Xception(10, dropout=0.5, **TINY)
    x = torch.randn(4, 3, 32, 32)
    model.train()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert not torch.allclose(a, b), "dropout is computed but not applied"
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    # With dropout 0 two train-mode passes agree: the difference above came from dropout.
    torch.manual_seed(0)
    model0 = Xception(10, dropout=0.0, **TINY).train()
    with torch.no_grad():
        assert torch.equal(model0(x), model0(x))
    # Dropout acts on the pooled features right before the linear layer.
    model.train()
    fed: list[torch.Tensor] = []
    model.fc.register_forward_hook(lambda m, i, o: fed.append(i[0]))
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    assert ((pooled == 0).float().mean() > 0.2) and len(fed) == 0
    with torch.no_grad():
        model(x)
    assert (fed[0] == 0).float().mean() > 0.2


@pytest.mark.parametrize("hw", [(1, 1), (2, 2), (2, 5), (4, 4)])  # under the kernel; 4x4 is oneDNN's
@pytest.mark.parametrize("channels_last", [False, True])
def test_depthwise_small_map_path_is_the_same_convolution(hw: tuple[int, int], channels_last: bool) -> None:
    # On CPU, maps smaller than the kernel get their own weight gradient: same numbers, and it
    # is still a grouped nn.Conv2d whose hooks fire.
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    dw = DepthwiseConv2d(16).to(memory_format=layout)
    assert isinstance(dw, nn.Conv2d) and dw.bias is None and dw.groups == 16
    assert tuple(dw.weight.shape) == (16, 1, 3, 3) and dw.padding == (1, 1)
    calls: list[int] = []
    dw.register_forward_hook(lambda m, i, o: calls.append(1))
    x = torch.randn(5, 16, *hw)
    xi = x.contiguous(memory_format=layout).requires_grad_()
    out = dw(xi)
    assert len(calls) == 1 and out.shape == (5, 16, *hw)
    assert (type(out.grad_fn).__name__ == "_SmallMapDepthwiseBackward") == (min(hw) < 3)
    _assert_same_as_conv2d(dw, x, xi, out, padding=1, groups=16)


@pytest.mark.parametrize("hw", [(1, 1), (5, 6), (11, 12)])  # 1 pixel, GEMM-sized, conv-sized
@pytest.mark.parametrize("channels_last", [False, True])
def test_pointwise_fast_paths_are_the_same_1x1_convolution(hw: tuple[int, int], channels_last: bool) -> None:
    # On CPU the pointwise step may run as a GEMM: same numbers, same layout, gradients included,
    # and it is still an nn.Conv2d whose hooks fire.
    assert 5 * 6 <= PointwiseConv2d.GEMM_MAX_PIXELS < 11 * 12
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    pw = PointwiseConv2d(16, 24).to(memory_format=layout)
    assert isinstance(pw, nn.Conv2d) and pw.bias is None and tuple(pw.weight.shape) == (24, 16, 1, 1)
    calls: list[int] = []
    pw.register_forward_hook(lambda m, i, o: calls.append(1))
    x = torch.randn(3, 16, *hw)
    xi = x.contiguous(memory_format=layout).requires_grad_()
    out = pw(xi)
    assert len(calls) == 1 and out.shape == (3, 24, *hw)
    assert out.is_contiguous(memory_format=layout)
    _assert_same_as_conv2d(pw, x, xi, out)


def _assert_same_as_conv2d(conv: nn.Conv2d, x: torch.Tensor, xi: torch.Tensor, out: torch.Tensor,
                           **conv2d_args) -> None:
    """`out` = conv(xi), xi being x in some layout: the numbers and both gradients of F.conv2d."""
    wr = conv.weight.detach().contiguous().requires_grad_()
    xr = x.clone().requires_grad_()
    ref = F.conv2d(xr, wr, **conv2d_args)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    gx, gw = torch.autograd.grad(out.square().sum(), [xi, conv.weight])
    gx_ref, gw_ref = torch.autograd.grad(ref.square().sum(), [xr, wr])
    torch.testing.assert_close(gx, gx_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-4, atol=1e-4)
