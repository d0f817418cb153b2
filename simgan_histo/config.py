"""Typed, frozen run configuration and the named presets.

One dataclass per concern (STYLE §2). Defaults are the paper's or the release's
values, each commented with its source. `Config` groups them and checks the
constraints that span two concerns. No TensorFlow import here: synthesis
workers and `--help` must not pay for it.
"""

import dataclasses
import hashlib
import json
from typing import Optional, Tuple

SCHEMA_VERSION = 1
PRECISIONS = ("float32", "mixed_bfloat16")
PADDINGS = ("same", "valid")
ACTIVATIONS = ("lrelu", "relu")
FLOOD_SURFACES = ("segmentation", "detection", "hv", "distance")  # maps the watershed can flood


def _require(ok: bool, name: str, value, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r}: expected {expected}")


def _positive(obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _require(value > 0, f"{type(obj).__name__}.{name}", value, "> 0")


def _non_negative(obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _require(value >= 0, f"{type(obj).__name__}.{name}", value, ">= 0")


def _fraction(obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _require(0.0 <= value <= 1.0, f"{type(obj).__name__}.{name}", value, "in [0, 1]")


def _choice(obj, name: str, choices) -> None:
    value = getattr(obj, name)
    _require(value in choices, f"{type(obj).__name__}.{name}", value, f"one of {choices}")


@dataclasses.dataclass(frozen=True)
class SynthesisConfig:
    """The GAN-free module (paper §4.1, Fig. 3); release values from draw_fake.py."""

    patch_size: int = 200  # output patch side, px (2017 release: 200 synthesised, 140 kept)
    margin_px: int = 30  # synthesise at patch + 2·margin, then crop (release `cm`)
    mpp: float = 0.25  # µm/px tissue is resampled to (40×, the release's working scale)
    nucleus_radius_range: Tuple[float, float] = (8.5, 13.0)  # release HEAD `rad`, px at 40×
    irregularity: Tuple[float, float] = (0.6, 2.0)  # base + U(0, range), clipped to 1
    spikiness: Tuple[float, float] = (0.04, 0.20)  # base + U(0, range)
    vertices_range: Tuple[int, int] = (10, 18)  # int(U(10, 18))
    quad_inset_fraction: float = 0.674  # quad corner inset U(0, f·size): release 310 / 460
    min_nucleus_area_px: int = 140  # after the quad transform (release)
    max_overlap: float = 0.15  # overlap / own area before a redraw (release)
    overlap_redraws: int = 50  # then accepted anyway (release)
    placement_tries: int = 500  # per nucleus (release)
    empty_patch_probability: float = 0.10  # patches with 0 nuclei when density <= 1 (release)
    density_divisor: float = 0.06  # dense_lvl = H-foreground fraction / 0.06 (release)
    count_mean: Tuple[float, float] = (20.0, 30.0)  # N ~ N(a + b·dense, sd) per 400² (release)
    count_sd: float = 40.0  # (release)
    count_max: int = 256  # (release)
    # What sets a patch's nucleus count. "release": N(a + b·dense, sd) above, from the tile's
    # H-foreground *area*, which does not follow the real count (r 0.004 over the Kumar-train
    # tiles; BENCHMARKS.md). "classical": Poisson with the mean the classical Otsu-H +
    # watershed baseline counts in the same canvas of the tile (no labels; r 0.944).
    count_source: str = "release"
    # Where the nuclei go. "polygons": random star polygons (release, `placement.py`).
    # "classical": the instances the classical baseline finds in the tile, as polygons
    # (`synthesis/layout.py`; no labels). Labelled real layouts gave +0.023 Kumar Dice-avg
    # on one seed and +0.002 on another (no GAN); the baseline cuts nuclei into pieces and
    # this source lost 0.036 (BENCHMARKS.md). "net": the instances a finished run's exported
    # net (`layout_model`) finds in the tile, a second round on the first one's layouts
    # (−0.008 without the GAN, one seed).
    layout_source: str = "polygons"
    layout_model: str = ""  # export folder (SavedModel + inference.json) for "net"
    size_bias_mean: Tuple[float, float] = (1.2, 0.125)  # N(a + b·dense, sd) (release: 1/8)
    size_bias_sd: float = 0.32  # (release)
    # "Noise type 1" star polygons per 460² (release: 100), labelled background. Off: until now
    # a scale bug kept the speckle invisible (alpha <= 0.0014: 0.14 % of output values moved
    # by 1 grey level, at 10 % of the synthesis time) and DESIGN §7 measured that pale
    # distractors cost recall; 100 gives the release's visible speckle.
    speckle_max: int = 0
    pale_blob_max: int = 5  # "noise type 2" pale nucleus-like blobs (release)
    # Inpaint band: H > p(100 − (100 − p_otsu)·f) (release 1.08). 1.0, the Otsu foreground
    # itself, inpaints 2 points less of MoNuSeg train but fails the Otsu-Dice realism check
    # (0.698 < 0.7; BENCHMARKS.md).
    super_segmentation_factor: float = 1.08
    sub_segmentation_factor: float = 0.92  # nuclear colour band (release)
    inpaint_radius: int = 3  # cv2.inpaint Telea radius (release)
    pale_tile_threshold: float = 100.0  # tile rejected if min(nuclear colour) > this (release)
    color_jitter: float = 0.10  # aug_color magnitude (release)
    # add_h_color: H += U(0, this). Release: 0.04, a tint of glass and tissue alike that moves
    # the background out of its tile's LAB range (BENCHMARKS.md); stain_scale_jitter replaces it.
    hematoxylin_shift_max: float = 0.0
    texture_gain: float = 1.3  # eosin texture scale (release)
    # Mean nucleus areas (px) at which chromatin clearing may reach 42 % and then starts at
    # 10 % (release `transpar_per`: 800 / 2400). They are in the release's pixels: presets
    # with smaller nuclei scale them by their median mean area ÷ the release's (966 px).
    clearing_area_px: Tuple[float, float] = (800.0, 2400.0)
    stain_scale_jitter: float = 0.10  # H and E × U(1 ± this) per patch (DESIGN §7; Tellez 2018)
    inpaint_closing_px: int = 3  # close rim gaps so pale nuclei fill (0 = release; DESIGN §7)
    inpaint_fill_holes_px: int = 2500  # fill its enclosed holes up to this area: pale nuclei
    inpaint_dilate_px: int = 1  # grow it so fills start outside dark rims (0 = release)
    # Open it (after the hole filling) with a disk of this diameter: H-band strands and specks
    # narrower than that are purple non-nuclear tissue, kept as background (DESIGN §7). 0/1 = off.
    inpaint_opening_px: int = 3
    tissue_std_threshold: float = 8.0  # release cyto_mask: block colour std >= 8
    min_tissue_fraction: float = 0.25  # tiles with less tissue are rejected ("no_tissue")
    source_tile_px: int = 1000  # slides are cut into tiles of this side at `mpp` (release: >1000²)
    max_tiles_per_slide: int = 32  # the most tissue-rich tiles of one slide, at most

    def __post_init__(self):
        _positive(self, "patch_size", "mpp", "min_nucleus_area_px", "placement_tries",
                  "density_divisor", "inpaint_radius", "texture_gain")
        _non_negative(self, "margin_px", "overlap_redraws", "count_sd", "count_max",
                      "size_bias_sd", "speckle_max", "pale_blob_max", "color_jitter",
                      "hematoxylin_shift_max", "stain_scale_jitter", "inpaint_closing_px",
                      "inpaint_fill_holes_px", "inpaint_dilate_px", "inpaint_opening_px",
                      "tissue_std_threshold")
        _positive(self, "source_tile_px", "max_tiles_per_slide")
        _fraction(self, "quad_inset_fraction", "max_overlap", "empty_patch_probability",
                  "min_tissue_fraction")
        _choice(self, "count_source", ("release", "classical"))
        _choice(self, "layout_source", ("polygons", "classical", "net"))
        _require((self.layout_source == "net") == bool(self.layout_model),
                 "SynthesisConfig.layout_model", self.layout_model,
                 'an export folder exactly when layout_source="net"')
        _require(self.stain_scale_jitter < 1.0, "SynthesisConfig.stain_scale_jitter",
                 self.stain_scale_jitter, "< 1")
        _require(self.source_tile_px >= 2 * self.patch_size, "SynthesisConfig.source_tile_px",
                 self.source_tile_px, f">= 2 × patch_size ({2 * self.patch_size})")
        _require(self.patch_size >= 32, "SynthesisConfig.patch_size", self.patch_size, ">= 32")
        for name in ("nucleus_radius_range", "vertices_range", "clearing_area_px"):
            low, high = getattr(self, name)
            _require(0 < low <= high, f"SynthesisConfig.{name}", (low, high), "0 < low <= high")


@dataclasses.dataclass(frozen=True)
class ReferenceBranchConfig:
    """The reference-patch branch (paper Fig. 5): conv stack, global pool, tiled."""

    filters: int = 32  # release ref_conv_* width
    first_kernel_size: int = 4  # ref_conv_0 4×4 (release)
    num_convs: int = 4  # 4× 5×5 after the pool (release)
    kernel_size: int = 5
    pool_size: int = 3  # avgpool 3/2 after ref_conv_0 (release)
    padding: str = "valid"  # release: VALID
    activation: str = "lrelu"  # release conv2d default
    lrelu_alpha: float = 0.2  # release lrelu(0.2)

    def __post_init__(self):
        _positive(self, "filters", "first_kernel_size", "kernel_size", "pool_size")
        _non_negative(self, "num_convs", "lrelu_alpha")
        _choice(self, "padding", PADDINGS)
        _choice(self, "activation", ACTIVATIONS)

    def min_input_size(self) -> int:
        """Smallest square reference patch whose features before the global pool are ≥ 1×1."""
        if self.padding == "same":
            return 1
        size = 1 + self.num_convs * (self.kernel_size - 1)
        size = (size - 1) * 2 + self.pool_size  # undo the avgpool of stride 2
        return size + self.first_kernel_size - 1


@dataclasses.dataclass(frozen=True)
class RefinerConfig:
    """Refiner G(I, S) (paper Fig. 5): residual, fully convolutional, clip(I + Δ)."""

    filters: int = 32  # release HEAD: 5 blocks × 32 channels
    num_blocks: int = 5
    kernel_size: int = 5  # release resnet_block default
    first_kernel_size: int = 3  # pre_conv_0 3×3 SAME (release)
    activation: str = "lrelu"
    lrelu_alpha: float = 0.2  # release lrelu(0.2)
    use_reference: bool = True  # False = the "no reference patch" ablation
    reference: ReferenceBranchConfig = ReferenceBranchConfig()
    output_kernel_size: int = 3  # conv_1 3@3×3, linear (release)

    def __post_init__(self):
        _positive(self, "filters", "kernel_size", "first_kernel_size", "output_kernel_size")
        _non_negative(self, "num_blocks", "lrelu_alpha")
        _choice(self, "activation", ACTIVATIONS)

    def min_input_size(self) -> int:
        """Smallest square input (image and reference) the refiner accepts (SAME main stream)."""
        return self.reference.min_input_size() if self.use_reference else 1


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """Discriminator D(X, S): a local map of real/fake logits (release model.py)."""

    first_filters: int = 32  # conv_0 32@3×3 (release)
    first_kernel_size: int = 3
    stage_filters: Tuple[int, ...] = (32, 48, 64, 80)  # release stages 1–4
    stage_convs: Tuple[int, ...] = (2, 3, 3, 3)
    stage_pools: Tuple[int, ...] = (2, 3, 3, 3)  # avgpool size, stride 2 (release)
    head_filters: Tuple[int, ...] = (128, 128, 128)  # stage 5 (release)
    head_kernel_sizes: Tuple[int, ...] = (5, 3, 3)
    kernel_size: int = 5
    padding: str = "valid"  # release: all VALID
    activation: str = "lrelu"
    lrelu_alpha: float = 0.2
    use_reference: bool = True
    reference: ReferenceBranchConfig = ReferenceBranchConfig()

    def __post_init__(self):
        _positive(self, "first_filters", "first_kernel_size", "kernel_size")
        _choice(self, "padding", PADDINGS)
        _choice(self, "activation", ACTIVATIONS)
        lengths = {len(self.stage_filters), len(self.stage_convs), len(self.stage_pools)}
        _require(len(lengths) == 1, "DiscriminatorConfig.stage_*", lengths, "equal lengths")
        _require(len(self.head_filters) == len(self.head_kernel_sizes),
                 "DiscriminatorConfig.head_kernel_sizes", self.head_kernel_sizes,
                 "one per head_filters entry")

    def min_input_size(self) -> int:
        """Smallest square input whose output map is at least 1×1 (reference branch included)."""
        reference = self.reference.min_input_size() if self.use_reference else 1
        if self.padding == "same":
            return max(2 ** len(self.stage_pools), reference)
        size = 1 + sum(k - 1 for k in self.head_kernel_sizes)
        for filters_pool, convs in reversed(list(zip(self.stage_pools, self.stage_convs))):
            size = (size - 1) * 2 + filters_pool  # undo an avgpool of stride 2
            size += convs * (self.kernel_size - 1)
        return max(size + self.first_kernel_size - 1, reference)

    def output_size(self, input_size: int) -> int:
        """Side of D's logit map for a square input of `input_size` px (0 if too small)."""
        if self.padding == "same":
            size = input_size
            for _ in self.stage_pools:
                size = -(-size // 2)  # SAME avgpool, stride 2
            return size
        size = input_size - self.first_kernel_size + 1
        for pool, convs in zip(self.stage_pools, self.stage_convs):
            size -= convs * (self.kernel_size - 1)
            size = (size - pool) // 2 + 1 if size >= pool else 0
        size -= sum(k - 1 for k in self.head_kernel_sizes)
        return max(size, 0)


@dataclasses.dataclass(frozen=True)
class GanTrainConfig:
    """Losses, importance weights, optimisers and schedule (paper Eq. 4–6; release config.py)."""

    batch_size: int = 10  # synthetic patches per refiner step (release)
    alpha: float = 1.0  # weight of L_reg (paper)
    beta: float = 1.0  # weight of L_real (paper)
    gamma: float = 1e-7  # weight of L_hard, Eq. 6 (paper §4.2; release learner_adv_scale)
    lambda_l1: float = 1e-5  # elastic net L1 (paper; release v1.0)
    lambda_l2: float = 1e-4  # elastic net squared L2 (paper; release v1.0)
    adversarial_loss: str = "non_saturating"  # release −log D; "log_one_minus" = paper
    use_importance_weights: bool = True  # Eq. 5
    use_hard_examples: bool = True  # L_hard
    importance_ratio: float = 1.0  # c in Eq. 5 (release: no constant)
    importance_clip: Tuple[float, float] = (0.2, 2.0)  # release HEAD
    history_fraction: float = 0.5  # share of D's fake batch from the buffer (S+U)
    buffer_capacity: int = 64000  # release (stored as uint8 here)
    refiner_learning_rate: float = 3e-6  # release
    discriminator_learning_rate: float = 3e-5  # release
    task_learning_rate: float = 3e-6  # release
    optimizer: str = "momentum"  # release: Momentum 0.95
    momentum: float = 0.95
    max_grad_norm: float = 50.0  # release clip_by_norm per variable
    refiner_warmup_steps: int = 1000  # release initial_K_g
    discriminator_warmup_steps: int = 1000  # release initial_K_d
    adversarial_steps: int = 1000  # release max_step_d_g (refiner + discriminator)
    task_warmup_steps: int = 1000  # release initial_K_l
    joint_steps: int = 10000  # release max_step_d_g_l
    task_final_steps: int = 1000  # release after_K_l
    k_g: int = 2  # refiner updates per joint iteration (release)
    k_d: int = 1  # discriminator updates per joint iteration (release)
    k_task: int = 6  # task-net updates per joint iteration (release)
    summary_every: int = 500  # release sample dumps
    checkpoint_every: int = 500

    def __post_init__(self):
        _positive(self, "batch_size", "buffer_capacity", "refiner_learning_rate",
                  "discriminator_learning_rate", "task_learning_rate", "max_grad_norm",
                  "summary_every", "checkpoint_every", "importance_ratio")
        _non_negative(self, "alpha", "beta", "gamma", "lambda_l1", "lambda_l2", "momentum",
                      "refiner_warmup_steps", "discriminator_warmup_steps", "adversarial_steps",
                      "task_warmup_steps", "joint_steps", "task_final_steps", "k_g", "k_d", "k_task")
        _fraction(self, "history_fraction")
        _choice(self, "adversarial_loss", ("non_saturating", "log_one_minus"))
        _choice(self, "optimizer", ("momentum", "adam"))
        low, high = self.importance_clip
        _require(0 < low <= high, "GanTrainConfig.importance_clip", self.importance_clip,
                 "0 < low <= high")


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """Task net (U-Net or the 15-conv CNN), its loss, training and watershed thresholds."""

    architecture: str = "unet"  # or "cnn15" (our reconstruction of the paper's CNN)
    filters: Tuple[int, ...] = (16, 32, 64, 128, 256)  # release U-Net widths
    convs_per_level: Tuple[int, ...] = (3, 4, 4, 5, 6)  # release U-Net depth
    activation: str = "lrelu"
    lrelu_alpha: float = 0.2
    batch_norm: bool = False  # release: with_batch_norm=False
    crop_size: int = 192  # training crop, px (a multiple of the stride, <= patch_size)
    batch_size: int = 10
    learning_rate: float = 1e-3
    # "constant" (release) or "cosine": from learning_rate to 0 over train_steps, so the
    # last steps average out Adam's noise instead of selecting among noisy iterates. One
    # Kumar seed scored lower with cosine (BENCHMARKS.md, "fourth row"), so no preset uses it.
    learning_rate_decay: str = "constant"
    # Polyak averaging: validation, selection and export use an exponential moving average of
    # the weights (new = m·old + (1 − m)·weights, after every step) while training goes on
    # from the raw weights. 0 = off (release); cpu_small 0.99.
    ema_momentum: float = 0.0
    train_steps: int = 10000
    validation_fraction: float = 0.1  # held-out synthetic patches
    roi_border_fraction: float = 0.125  # release: 50 px border of 400
    roi_border_weight: float = 0.01  # release
    detection_dilation: int = 3  # release: 3×3 dilation of the centroid bit
    # Detection head's target: "centroid" (release: the dilated centroid bit) or "core"
    # (each nucleus' inner part beyond core_fraction of its largest inner distance; grows
    # with the nucleus, training/detection_target.py). Kumar no-GAN, seed 0: cores scored
    # AJI 0.447 against 0.476 (BENCHMARKS.md), so no preset uses them. "distance": each
    # pixel's inner distance ÷ its nucleus' largest, a soft target (DIST; pair it with
    # flood_on_grid including "detection" and a det_threshold_grid of core levels). Kumar
    # budget 30, seed 0, paired: AJI 0.484 against 0.499 (more splits), so it is off too.
    detection_target: str = "centroid"
    core_fraction: float = 0.5
    # Segmentation target without a 1-px line where two nuclei touch, so the segmentation
    # map has a valley to cut along (training/detection_target.py). Off: release. Kumar
    # budget 30, seed 0, paired: 0.686 / 0.504 against 0.692 / 0.499 (fewer merges, more
    # splits; BENCHMARKS.md).
    separate_touching: bool = False
    # Per training sample, H and E optical densities × U(1 ± this) (Tellez et al. 2018's
    # HED augmentation, at task-net time; the synthesis has its own jitter). 0 = off. Kumar
    # budget 30, seed 0, paired, 0.2: 0.689 / 0.493 against 0.692 / 0.499 (BENCHMARKS.md).
    stain_jitter: float = 0.0
    # A third head learns HoVer-Net's horizontal/vertical distance maps (Graham et al. 2019;
    # training/hv_target.py), fitted by squared error plus hv_gradient_weight × squared
    # error of their slopes inside nuclei, all × hv_weight. Pair it with flood_on_grid
    # including "hv": the watershed then cuts touching nuclei where the maps fall. Kumar
    # budget 30, seed 0, paired: 0.682 / 0.498 against 0.692 / 0.499 (BENCHMARKS.md), so
    # no preset uses it.
    hv_head: bool = False
    hv_weight: float = 1.0
    hv_gradient_weight: float = 2.0  # HoVer-Net's weight of the gradient term
    # > 0 adds seg_dice_weight × (1 − soft Dice) of the segmentation head to each sample's
    # loss, scaled by its roi pixel count so that 1 matches HoVer-Net's "mean CE + Dice" for
    # its nuclear-pixel branch (our cross-entropies are sums over pixels). Kumar budget 30,
    # seeds 0 and 1, paired, weight 1: 0.679 / 0.501 and 0.670 / 0.482 against 0.693 / 0.520
    # and 0.676 / 0.500 (BENCHMARKS.md), so no preset uses it.
    seg_dice_weight: float = 0.0
    use_importance_weights: bool = True
    seg_threshold: float = 0.33  # release run_wsi_seg_nuclei.sh
    det_threshold: float = 0.07  # release
    det_sigma: float = 1.0  # release
    seg_sigma: float = 0.5  # release
    min_area_px: int = 20  # release min_nucleus_size
    max_area_px: int = 65536  # release max_nucleus_size
    compactness: float = 1.0  # release watershed compactness
    flood_on: str = "segmentation"  # the map whose valleys the watershed follows (release)
    min_hematoxylin: float = 0.0  # least mean H optical density of a nucleus; 0 = off (release)
    merge_solidity: float = 0.0  # merge touching instances this convex together; 0 = off (release)
    seed_h: float = 0.0  # > 0: distance-transform h-maxima seeds, px (watershed.py); 0 = release
    # The distance transform of distance seeds ignores the foreground's holes (watershed.py).
    # Kumar budget 30, seeds 0 and 1 re-scored: test +0.006 / +0.004 Dice-avg, but their
    # held-out synthetic patches lose AJI (seed 1 −0.01; BENCHMARKS.md), so no preset uses it.
    distance_fill_holes: bool = False
    kernel_size: int = 3  # release U-Net convs are 3×3
    real_batch_fraction: float = 0.5  # share of a batch from real labels when mixed (release 22/32)
    # What the pipeline's task net trains on after the GAN: "buffer" (the refined patches of
    # the history buffer) or "refined" (gan.buffer_capacity fresh patches, each refined by
    # the final refiner; training/refined_set.py). Kumar budget 30, seed 0: "refined" scored
    # 0.663 / 0.484 against 0.685 / 0.497 (BENCHMARKS.md), so no preset uses it.
    training_patches: str = "buffer"
    # Self-training (training/self_training.py): this share of train_steps goes to a second
    # round that mixes the tissue tiles, labelled by the first round's net, into the synthetic
    # batches (real_batch_fraction), starting from the first round's weights. 0 = off.
    self_training_share: float = 0.0
    # The label-free pipeline starts the exported task net from the GAN's jointly trained one
    # (paper §3: the task net trains with the refiner) instead of from scratch.
    init_from_gan: bool = True
    summary_every: int = 50  # TensorBoard scalars
    checkpoint_every: int = 500
    eval_every: int = 500  # held-out validation; the best evaluation is the stopping point
    max_validation_patches: int = 64  # cap on held-out synthetic patches (CPU budget)
    # Where the pipeline's held-out synthetic patches come from: "held_out" (whole tissue
    # tiles of the training patches, validation_fraction of them up to the cap) or "fresh"
    # (max_validation_patches new patches from every tile, refined by the final refiner
    # when there is one; all training patches then train). Kumar seed 0 with 128 fresh
    # patches: 0.675 / 0.495 against 0.685 / 0.497 (BENCHMARKS.md), so no preset uses it.
    validation_patches: str = "held_out"
    selection_metric: str = "aji"  # stopping point and thresholds: "aji", "dice_avg" or "loss"
    seg_threshold_grid: Tuple[float, ...] = (0.2, 0.33, 0.45, 0.6, 0.75)  # incl. release 0.33
    det_threshold_grid: Tuple[float, ...] = (0.03, 0.07, 0.15, 0.3, 0.5)  # includes release 0.07
    # Gaussian σ (px) on the detection map before seeding, chosen with the thresholds. The
    # release fixed 1.0; wider smoothing merges the several detection peaks a large or
    # elongated nucleus can raise (the label-free model's main error, BENCHMARKS.md).
    det_sigma_grid: Tuple[float, ...] = (1.0,)
    # Smallest instance kept (px), chosen with the thresholds (release: 20 fixed).
    min_area_grid: Tuple[int, ...] = (20,)
    # Watershed compactness, chosen with the thresholds (release: 1.0 fixed). At 1.0 the
    # distance term outweighs the probabilities (all in [0, 1]), so touching nuclei are cut
    # along straight Voronoi lines; at 0 the cut follows the segmentation map's valleys.
    compactness_grid: Tuple[float, ...] = (1.0,)
    # The flooded map, chosen with the thresholds: "segmentation" (release) or "detection"
    # (useful when the detection head learns the inner distance, detection_target).
    flood_on_grid: Tuple[str, ...] = ("segmentation",)
    # Least mean hematoxylin optical density of a kept instance on the net's input image
    # (`watershed.drop_pale`), chosen with the thresholds; 0 keeps all (release). With
    # (0, 0.03, 0.04, 0.05): Kumar's selection keeps none (seed 0); MoNuSeg's takes 0.04–0.05,
    # +0.012 and −0.006 AJI on two paired seeds (BENCHMARKS.md), so no preset uses it.
    min_hematoxylin_grid: Tuple[float, ...] = (0.0,)
    # Solidity above which two touching instances are merged (`postprocess/convex_merge.py`),
    # chosen with the thresholds; 0 = off (release). On the test sets a fixed 0.85–0.9 would
    # gain up to 0.011 Dice-avg, but chosen on synthetic patches from (0, 0.85, 0.9, 0.95)
    # it took 0.9/0.95 and changed the 5 Kumar and 4 MoNuSeg exports' means by −0.001 to
    # +0.004 (BENCHMARKS.md), so no preset but `tiny` (to exercise the code) searches it.
    merge_solidity_grid: Tuple[float, ...] = (0.0,)
    # Seeds: 0 = the detection map's (release); h > 0 = the foreground distance transform's
    # h-maxima (`watershed.instances_from_maps`), chosen with the thresholds.
    seed_h_grid: Tuple[float, ...] = (0.0,)
    # XLA for the train step: "auto" = on under mixed_bfloat16 only (TF 2.21's non-XLA bf16
    # conv gradients are ~20× slower than fp32 on this CPU; measured, BENCHMARKS.md).
    jit_compile: str = "auto"

    def __post_init__(self):
        _choice(self, "architecture", ("unet", "cnn15"))
        _choice(self, "selection_metric", ("aji", "dice_avg", "loss"))
        _choice(self, "jit_compile", ("auto", "on", "off"))
        _choice(self, "learning_rate_decay", ("constant", "cosine"))
        _choice(self, "detection_target", ("centroid", "core", "distance"))
        _choice(self, "flood_on", FLOOD_SURFACES)
        _require(len(self.flood_on_grid) > 0
                 and all(v in FLOOD_SURFACES for v in self.flood_on_grid),
                 "TaskConfig.flood_on_grid", self.flood_on_grid,
                 f"a non-empty tuple of {FLOOD_SURFACES}")
        _require(self.hv_head or "hv" not in (self.flood_on,) + tuple(self.flood_on_grid),
                 "TaskConfig.flood_on_grid", self.flood_on_grid,
                 'no "hv" unless hv_head=True (the net has no hv maps to flood)')
        _choice(self, "training_patches", ("buffer", "refined"))
        _choice(self, "validation_patches", ("held_out", "fresh"))
        _require(0.0 <= self.core_fraction < 1.0, "TaskConfig.core_fraction", self.core_fraction,
                 "in [0, 1)")
        _require(0.0 <= self.self_training_share < 1.0, "TaskConfig.self_training_share",
                 self.self_training_share, "in [0, 1)")
        _require(0.0 <= self.ema_momentum < 1.0, "TaskConfig.ema_momentum", self.ema_momentum,
                 "in [0, 1)")
        _require(0.0 <= self.stain_jitter < 1.0, "TaskConfig.stain_jitter", self.stain_jitter,
                 "in [0, 1)")
        _positive(self, "kernel_size", "summary_every", "checkpoint_every", "eval_every",
                  "max_validation_patches")
        _fraction(self, "real_batch_fraction")
        _require(len(self.det_sigma_grid) > 0 and all(v >= 0 for v in self.det_sigma_grid),
                 "TaskConfig.det_sigma_grid", self.det_sigma_grid, "a non-empty tuple of σ >= 0")
        _require(len(self.min_hematoxylin_grid) > 0
                 and all(v >= 0 for v in self.min_hematoxylin_grid),
                 "TaskConfig.min_hematoxylin_grid", self.min_hematoxylin_grid,
                 "a non-empty tuple of densities >= 0")
        _require(len(self.merge_solidity_grid) > 0
                 and all(0.0 <= v <= 1.0 for v in self.merge_solidity_grid),
                 "TaskConfig.merge_solidity_grid", self.merge_solidity_grid,
                 "a non-empty tuple of values in [0, 1]")
        _require(len(self.seed_h_grid) > 0 and all(v >= 0 for v in self.seed_h_grid),
                 "TaskConfig.seed_h_grid", self.seed_h_grid, "a non-empty tuple of h >= 0")
        _require(len(self.compactness_grid) > 0 and all(v >= 0 for v in self.compactness_grid),
                 "TaskConfig.compactness_grid", self.compactness_grid,
                 "a non-empty tuple of values >= 0")
        _require(len(self.min_area_grid) > 0
                 and all(0 <= v < self.max_area_px for v in self.min_area_grid),
                 "TaskConfig.min_area_grid", self.min_area_grid,
                 "a non-empty tuple of areas in [0, max_area_px)")
        for name in ("seg_threshold_grid", "det_threshold_grid"):
            grid = getattr(self, name)
            _require(len(grid) > 0 and all(0.0 <= t <= 1.0 for t in grid),
                     f"TaskConfig.{name}", grid, "a non-empty tuple of values in [0, 1]")
        _choice(self, "activation", ACTIVATIONS)
        _require(len(self.filters) == len(self.convs_per_level), "TaskConfig.convs_per_level",
                 self.convs_per_level, f"{len(self.filters)} entries, one per level")
        _positive(self, "crop_size", "batch_size", "learning_rate", "train_steps",
                  "detection_dilation", "max_area_px")
        _non_negative(self, "det_sigma", "seg_sigma", "min_area_px", "compactness",
                      "min_hematoxylin", "hv_weight", "hv_gradient_weight", "seed_h",
                      "seg_dice_weight")
        _fraction(self, "validation_fraction", "roi_border_fraction", "roi_border_weight",
                  "seg_threshold", "det_threshold", "merge_solidity")
        stride = 2 ** (len(self.filters) - 1)
        _require(self.crop_size % stride == 0, "TaskConfig.crop_size", self.crop_size,
                 f"a multiple of the U-Net stride {stride}")

    @property
    def stride(self) -> int:
        return 2 ** (len(self.filters) - 1)


@dataclasses.dataclass(frozen=True)
class WsiConfig:
    """Whole-slide inference: resolution, tiles and seams, stain, outputs."""

    mpp: Optional[float] = None  # override of the slide's µm/px; None = read it
    tile_size_px: int = 2048  # at processing resolution
    overlap_px: int = 128  # > the largest nucleus (StarDist/HoVer-Net convention)
    stain_norm: str = "auto"  # "reinhard", "none"; auto = as the model's inference.json
    thumbnail_mpp: float = 8.0  # tissue mask resolution
    # Tiles whose core holds no more tissue than this are skipped; 0 = any tissue, because a
    # sliver of tissue at a core's edge still holds nuclei.
    min_tissue_fraction: float = 0.0
    csv_tile_px: int = 4000  # the release's TCGA CSV tiles (level 0)
    batch_size: int = 2
    engine: str = "local"  # or "dask"
    context_px: int = 0  # read-window border seen by the model but trusted for nothing
    tissue_margin_um: float = 32.0  # tissue mask dilation (HoVer-Net: disk 16 at 1.25×)
    min_tissue_area_um2: float = 10000.0  # smaller tissue specks are dropped (0.01 mm²)
    qc_overlays: int = 4  # full-resolution QC overlays per slide
    qc_overlay_px: int = 512  # their side, level-0 px

    def __post_init__(self):
        _positive(self, "tile_size_px", "thumbnail_mpp", "csv_tile_px", "batch_size",
                  "qc_overlay_px")
        _non_negative(self, "overlap_px", "context_px", "tissue_margin_um",
                      "min_tissue_area_um2", "qc_overlays")
        _fraction(self, "min_tissue_fraction")
        if self.mpp is not None:
            _positive(self, "mpp")
        _choice(self, "stain_norm", ("auto", "reinhard", "none"))
        _choice(self, "engine", ("local", "dask"))
        # Keeps the core (tile - overlap - 2·context) wider than the overlap: less waste.
        needed = 2 * self.overlap_px + 2 * self.context_px
        _require(self.tile_size_px > needed, "WsiConfig.tile_size_px", self.tile_size_px,
                 f"> 2 × (overlap_px + context_px) = {needed}")


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """How a run executes (not the science): precision, threads, seed, workers."""

    precision: str = "float32"  # or "mixed_bfloat16" (≈ 1.9× here, DESIGN §4)
    seed: int = 0
    workers: int = 1  # synthesis / post-processing worker processes (spawn)
    intra_op_threads: int = 0  # 0 = TF default (best here, DESIGN §4)
    inter_op_threads: int = 0

    def __post_init__(self):
        _choice(self, "precision", PRECISIONS)
        _positive(self, "workers")
        _non_negative(self, "seed", "intra_op_threads", "inter_op_threads")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs; written to `<workdir>/config.json`."""

    # The defaults are the release's 400×400 setting; `release_2019()` names it.
    preset: str = "release_2019"
    synthesis: SynthesisConfig = SynthesisConfig(patch_size=400)
    refiner: RefinerConfig = RefinerConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    gan: GanTrainConfig = GanTrainConfig()
    task: TaskConfig = TaskConfig(crop_size=400)
    wsi: WsiConfig = WsiConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    def __post_init__(self):
        needed = self.discriminator.min_input_size()
        _require(self.synthesis.patch_size >= needed, "SynthesisConfig.patch_size",
                 self.synthesis.patch_size,
                 f">= {needed}, the smallest input this discriminator accepts")

    def replace(self, **sections) -> "Config":
        """Returns a copy with `section={field: value}` overrides applied."""
        updated = {}
        for section, fields in sections.items():
            current = getattr(self, section)
            if isinstance(fields, dict):
                updated[section] = dataclasses.replace(current, **fields)
            else:
                updated[section] = fields
        return dataclasses.replace(self, **updated)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        return _from_dict(cls, json.loads(text), "Config")

    def hash(self) -> str:
        """Short stable digest of the science (runtime settings excluded)."""
        science = dataclasses.asdict(self)
        science.pop("runtime")
        text = json.dumps(science, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _from_dict(cls, data: dict, where: str):
    """Builds dataclass `cls` from a dict, rejecting unknown keys and restoring tuples."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        default = fields[name].default
        if dataclasses.is_dataclass(default):
            value = _from_dict(type(default), value, f"{where}.{name}")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def load(path: str) -> Config:
    """Reads a `config.json` written by `Config.to_json`."""
    with open(path, encoding="utf-8") as f:
        return Config.from_json(f.read())


# ---------------------------------------------------------------------------------------------
# Presets. Architecture variants are data; FLOP figures per preset are in BENCHMARKS.md.


def release_2019() -> Config:
    """The released 400×400 code at HEAD (v1.0 loss weights, as the paper states them)."""
    return Config(
        preset="release_2019",
        synthesis=SynthesisConfig(patch_size=400),
        task=TaskConfig(crop_size=400),  # U-Net 16…256: 208 kFLOP/px forward, 5.75 M params
        gan=GanTrainConfig(),
    )


def paper_2017() -> Config:
    """The paper's layer counts (2017 75×75 code lineage), fully convolutional decoder."""
    return Config(
        preset="paper_2017",
        synthesis=SynthesisConfig(patch_size=200),
        refiner=RefinerConfig(num_blocks=8, kernel_size=3, filters=64),
        discriminator=DiscriminatorConfig(
            stage_filters=(48, 80, 80), stage_convs=(1, 3, 3), stage_pools=(2, 2, 2),
            head_filters=(64,), head_kernel_sizes=(1,), kernel_size=3, padding="same"),
        # 14 trunk convs + the 3×3 logit conv = the paper's 15 conv layers, 2 pools;
        # 224 kFLOP/px forward, 0.72 M params.
        task=TaskConfig(architecture="cnn15", filters=(32, 64, 128), convs_per_level=(5, 5, 4),
                        crop_size=200),
        gan=GanTrainConfig(lambda_l1=0.01, lambda_l2=0.1, refiner_learning_rate=1e-5,
                           discriminator_learning_rate=1e-5, task_learning_rate=1e-4),
    )


def cpu_small() -> Config:
    """Designed for a 2-core CPU: <= 0.3 TFLOP per joint iteration (DESIGN §4)."""
    small_reference = ReferenceBranchConfig(filters=16, first_kernel_size=4, num_convs=2,
                                            kernel_size=3, padding="same")
    return Config(
        preset="cpu_small",
        # Nuclei sized and counted like MoNuSeg train tissue at 40× (median area ≈ 290 px,
        # ≈ 25 per 200²); the release's sizes give ≈ 2.3× larger nuclei (BENCHMARKS.md).
        # Chromatin clearing, its kept rim and the boundary blur use the release's thresholds
        # × 0.3 (per-patch mean nucleus area: median 290 px here, 966 px in the release): with
        # the release's own, clearing never passed 15 % and no nucleus was vesicular. Kumar
        # budget 30, seeds 0–2: AJI 0.440 → 0.457, Prostate 0.30 → 0.45; Otsu-H Dice of 500
        # MoNuSeg patches 0.720 → 0.743 (BENCHMARKS.md).
        synthesis=SynthesisConfig(patch_size=128, nucleus_radius_range=(6.0, 10.0),
                                  size_bias_mean=(1.0, 0.06), size_bias_sd=0.2,
                                  count_mean=(20.0, 17.5), count_sd=30.0,
                                  min_nucleus_area_px=60, clearing_area_px=(240.0, 720.0)),
        # 24 channels keep a joint iteration at 0.27 TFLOP (benchmarks/model_flops.py; 32: 0.33).
        refiner=RefinerConfig(filters=24, num_blocks=3, kernel_size=3, reference=small_reference),
        discriminator=DiscriminatorConfig(
            first_filters=32, stage_filters=(32, 48, 64), stage_convs=(1, 1, 1),
            stage_pools=(2, 2, 2), head_filters=(64,), head_kernel_sizes=(3,), kernel_size=3,
            padding="same", reference=small_reference),
        # λ1/λ2 of the released 2017 code (1000× the paper's): with the paper's values, summed
        # L_reg at 128² and Adam 1e-4, the mean |Δ| reached 0.9 in [-1, 1] units (≈ 115 grey
        # levels) after 50 adversarial iterations; 0.01/0.1 kept it ≈ 1.5 grey levels and cut
        # the realism distance by 15 % in 40 (0.1/1.0: 3 %) (benchmarks/refiner_realism.py).
        # D at 3× the refiner's rate: with D at 1e-4 it sat at chance for most of a 20-minute
        # run and the regulariser pulled the refiner back to the identity (realism −6.9 %;
        # D at 3e-4: −9.7 %; halving λ as well made it 32 % worse; BENCHMARKS.md).
        gan=GanTrainConfig(
            lambda_l1=0.01, lambda_l2=0.1,
            batch_size=8, buffer_capacity=10000, refiner_learning_rate=1e-4,
            discriminator_learning_rate=3e-4, task_learning_rate=1e-3, optimizer="adam",
            # Short warm-ups (≈ 4.1 min) so a 20-minute run spends most of it in the joint
            # phase; with 100/100/100/200 the warm-ups took 15 of 20 minutes. D's warm-up is
            # 100 (62 s): with 21 the 20-minute realism gain was 9.7 %, with 100 10.2 %
            # (BENCHMARKS.md).
            refiner_warmup_steps=21, discriminator_warmup_steps=100, adversarial_steps=21,
            task_warmup_steps=42, joint_steps=2000, task_final_steps=500, k_task=2,
            summary_every=50, checkpoint_every=100),
        # U-Net 16-32-64-128: 88.4 kFLOP/px forward (≈ 3× per trained pixel), 0.57 M params.
        # 10,000 steps (release) give the task net 37 % of a scaled budget (--budget_min);
        # with 4,000 a 30-minute Kumar run had 479 steps and synthetic AJI 0.51 (BENCHMARKS.md).
        task=TaskConfig(filters=(16, 32, 64, 128), convs_per_level=(2, 2, 2, 2), crop_size=128,
                        batch_size=8, learning_rate=1e-3, train_steps=10000,
                        det_sigma_grid=(1.0, 2.0, 3.0), min_area_grid=(20, 40, 60),
                        # Kumar budget 30, 3 seeds: 0.683 ± 0.008 / 0.494 ± 0.005 with the
                        # weight average against 0.676 ± 0.014 / 0.485 ± 0.017 (BENCHMARKS.md).
                        compactness_grid=(1.0, 0.0), ema_momentum=0.99,
                        # Distance seeds and flooding the distance map (classical): re-selected
                        # on the held-out synthetic patches of the finished Kumar and MoNuSeg
                        # exports (BENCHMARKS.md, "distance seeds").
                        seed_h_grid=(0.0, 0.5, 1.0, 2.0),
                        flood_on_grid=("segmentation", "distance")),
    )


def demo() -> Config:
    """The README's main job: the whole pipeline in under 20 minutes on this CPU.

    Measured on an idle 2-core machine (BENCHMARKS.md): ≈ 0.7 s per warm-up iteration, 4 s per
    adversarial, 2 s per task warm-up and 5–6 s per joint iteration; ≈ 0.65 s per task-net
    step. The step counts below are sized to those figures, not to FLOP estimates.
    """
    base = cpu_small()
    return base.replace(
        preset="demo",
        # No final task-net phase: the pipeline trains its own task net from the buffer (the
        # GAN's task net only serves L_hard and is not exported).
        gan=dict(refiner_warmup_steps=20, discriminator_warmup_steps=20, adversarial_steps=20,
                 task_warmup_steps=40, joint_steps=50, task_final_steps=0, buffer_capacity=2000,
                 summary_every=10, checkpoint_every=25),
        task=dict(train_steps=600, eval_every=200, checkpoint_every=200),  # 88.4 kFLOP/px fwd
    )


def tiny() -> Config:
    """For tests: every network a few thousand parameters, every phase a couple of steps."""
    reference = ReferenceBranchConfig(filters=4, first_kernel_size=3, num_convs=1, kernel_size=3,
                                      padding="same")
    return Config(
        preset="tiny",
        synthesis=SynthesisConfig(patch_size=64, margin_px=8),
        refiner=RefinerConfig(filters=8, num_blocks=1, kernel_size=3, reference=reference),
        discriminator=DiscriminatorConfig(
            first_filters=8, stage_filters=(8, 8), stage_convs=(1, 1), stage_pools=(2, 2),
            head_filters=(8,), head_kernel_sizes=(3,), kernel_size=3, padding="same",
            reference=reference),
        gan=GanTrainConfig(
            batch_size=2, buffer_capacity=16, optimizer="adam", refiner_learning_rate=1e-3,
            discriminator_learning_rate=1e-3, task_learning_rate=1e-3, refiner_warmup_steps=1,
            discriminator_warmup_steps=1, adversarial_steps=1, task_warmup_steps=1, joint_steps=2,
            task_final_steps=1, k_task=1, summary_every=1, checkpoint_every=1),
        task=TaskConfig(filters=(8, 16), convs_per_level=(1, 1), crop_size=64, batch_size=2,
                        train_steps=2,  # U-Net 8-16: 5.3 kFLOP/px forward, 4.3 k params
                        merge_solidity_grid=(0.0, 0.9), seed_h_grid=(0.0, 1.0)),
        wsi=WsiConfig(tile_size_px=256, overlap_px=48),
    )


PRESETS = {
    "paper_2017": paper_2017,
    "release_2019": release_2019,
    "cpu_small": cpu_small,
    "demo": demo,
    "tiny": tiny,
}


def get_preset(name: str) -> Config:
    """Returns the named preset's Config; ValueError naming the choices otherwise."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r}: expected one of {sorted(PRESETS)}")
    return PRESETS[name]()
