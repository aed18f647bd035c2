"""An experiment is a config plus a family: validate it, load its data, build its family, fit.

The command line (`genjax.cli`) and notebooks both go through `run`:

    from experiments import vae_mnist
    config = vae_mnist.get_config()
    config.num_steps = 500
    result = genjax.experiment.run(config, workdir="runs/quick_vae", experiment="vae_mnist")
"""

from genjax import data, models
from genjax.compilation_cache import enable_compilation_cache
from genjax.config import validate_base
from genjax.train import FitResult, fit
from genjax.train.parallel import initialize_distributed
from genjax.train.rundir import ensure_writable


def validate(config):
    """Check every field before any work starts; returns the model module. Raises UserError."""
    validate_base(config)
    model = models.get(config.model)
    model.validate(config)
    return model


def load_data(config) -> tuple[data.Dataset, data.Dataset]:
    """The (train, test) splits the config names."""
    splits = [data.load(config.dataset, split, config.source, config.data_dir or None, config.seed) for split in ("train", "test")]
    return splits[0], splits[1]


def run(config, workdir: str, experiment: str) -> FitResult:
    """Validate, load data, build the family and fit it in `workdir` (resuming any run there)."""
    model = validate(config)
    initialize_distributed(config.distributed)
    enable_compilation_cache()
    ensure_writable(workdir)
    train, test = load_data(config)
    return fit(model.make_family(config, train), config, train, test, workdir, experiment)
