"""Training configurations and their defaults, importable without torch (command-line help reads them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from dif.detection import Detection


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 150
    lr: float = 5e-4
    margin: float = 0.01
    ema: float = 0.99
    depth: int = 4
    width: int = 32
    noise_channels: int = 16
    noise_scale: float = 0.1
    jitter: float = 0.03
    batch_per_class: int = 64
    seed: int = 0
    loss: str = "gap"  # "gap": mean fake minus mean real correlation; "pairwise": margin hinge per pair
    ema_start: float = 0.3  # fraction of steps before the EMA starts: early outputs are the untrained prior
    # "unet": DIF's deep prior (reference hyper-parameters above). "mean": the closed-form optimum of
    # the "gap" loss without a prior (mean fake minus mean real standardized residual). On a 2-core
    # CPU the U-Net cannot converge within a practical step budget and loses accuracy (docs/accuracy.md),
    # so "mean" is the default; "unet" is there for GPUs and for comparison.
    prior: str = "mean"
    # "lattice": the "mean" optimum folded modulo ``period`` pixels and tiled back: only the
    # frequencies of a P-periodic pattern are kept, each averaged over every period cell of every
    # crop. Generators upsample by powers of two (SD's VAE x8, diffusion upsamplers x4), so their
    # traces live on such a lattice while most of the mean's estimation noise does not.
    period: int = 8
    # Period of the block-codec grid projected out of every fingerprint (trainer.deblocked); 0: none.
    # Without it a fingerprint is "fakes minus JPEG-origin reals" and carries the reals' 8x8 block
    # grid with the opposite sign: photos cropped onto another phase matched it (13-18 of 68
    # CBSD68 photos called fake at 1 % by the first structured set), and a null wide enough to
    # cover them cost MJ and DALL-E Mini their TPR.
    deblock: int = 8

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class DenoiserConfig:
    depth: int = 6
    width: int = 16
    steps: int = 600
    batch: int = 16
    patch: int = 64
    lr: float = 1e-3
    sigma_min: float = 1.0 / 255
    sigma_max: float = 15.0 / 255
    seed: int = 0


@dataclass(frozen=True)
class Estimator:
    """How a fingerprint is estimated from residuals and which statistic decides on it."""

    name: str
    prior: str  # TrainConfig.prior
    period: int  # lattice period (prior "lattice")
    feature: str  # Detection.feature
    # Shift-search backstop (Detection.backstop_window), pixels per axis: the 1-8 px an image is
    # typically displaced by a crop or a border. A lattice's correlation repeats every period, so
    # half a period each way is every phase; its backstop is gated (Detection.gated), since a
    # search over phases also finds other generators' periodic traces (measured: SD1.4's fakes
    # passed DALL-E Mini's ungated search at 6-7 of 10, docs/accuracy.md).
    window: int = 8


# Chosen per generator by inner cross-validation (``select``), never by hand: the closed-form
# mean with the self-normalised z (the schema-1 default) or the background-normalised z_bg, and
# its 8- and 16-pixel lattice projections (crops sit on a 16-pixel grid, so both keep the phase).
# Every one is deblocked (TrainConfig.deblock): no phase can meet a photo's block grid.
ESTIMATORS = {e.name: e for e in (
    Estimator("mean/z", "mean", 8, "correlation"),
    Estimator("mean/zbg", "mean", 8, "zbg"),
    Estimator("lattice8/zbg", "lattice", 8, "zbg", window=4),
    Estimator("lattice16/zbg", "lattice", 16, "zbg", window=8),
)}
AUTO = "auto"
# The embedded set holds five generators: a fingerprint evaluated alone is held to the share of
# the rate it gets when served beside them.
DEFAULT_FAMILY_SIZE = 5


@dataclass(frozen=True)
class FitConfig:
    train: TrainConfig = TrainConfig()
    detection: Detection = Detection()
    # "auto": choose among ESTIMATORS by inner cross-validation; a name: that one; "flags": the
    # train/detection settings as given (--prior, --feature, --max-shift).
    estimator: str = AUTO
    # "inner-cv": the null's tail correction (and the recorded centres) from images the fingerprint
    # did not see; "train": no inner folds, theory's N(0, 1) null and centres of the training images.
    calibration: str = "inner-cv"
    inner_folds: int = 3
    augment_jpeg: tuple[int, ...] = ()  # JPEG qualities of extra training copies (robustness, no JPEG shortcut)
    # The null is fitted on held-out real photos as they are and as users also upload them:
    # resampling leaves periodic traces of its own, which a lattice fingerprint listens for
    # (training.perturb.NULL_VARIANTS names them). Empty: the photos as they are only.
    null_variants: tuple[str, ...] = ("upscale-1.25", "upscale-1.5", "upscale-2", "jpeg-90",
                                      "crop-1-3", "crop-3-6", "crop-6-1")
