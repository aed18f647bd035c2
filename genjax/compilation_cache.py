"""A persistent XLA compilation cache, so that rerunning an experiment loads its compiled programs.

Every fit turns it on (`experiment.fit_one`); the study, the comparison and `python -m genjax.evaluate` before
their first program (a program compiled while it is off neither reads nor writes it: the next process compiles
it again). Compiled programs are kept in ~/.cache/genjax/xla ($XDG_CACHE_HOME/genjax/xla when that is set), at
most 2 GiB, least recently used evicted first. A rerun of the same model, resumed or fresh, then starts
training in about a second instead of compiling (see the README's benchmarks section).

    GENJAX_COMPILATION_CACHE=off    no cache
    GENJAX_COMPILATION_CACHE=DIR    keep it in DIR

JAX's own setting wins: with JAX_COMPILATION_CACHE_DIR (or jax_compilation_cache_dir set in Python) genjax
leaves the cache as it is. The cache changes no result, only the time to get one: JAX keys each entry by
the program, the compiler flags, the devices and the JAX version.
"""

import os

import jax

VARIABLE = "GENJAX_COMPILATION_CACHE"
MAX_BYTES = 2 * 2**30


def default_directory() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "genjax", "xla")


def enable_compilation_cache() -> str | None:
    """Turn the cache on (unless opted out or already configured); returns its directory, or None when off."""
    setting = os.environ.get(VARIABLE, "").strip()
    if setting.lower() in ("0", "off", "false", "no"):
        return None
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    directory = setting or default_directory()
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # evaluation and sampling add up too
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return directory
