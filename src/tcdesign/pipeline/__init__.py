"""The whole inverse-design pipeline (``tcdesign run``): generate -> screen -> rank -> verify."""

from tcdesign.pipeline.settings import RunSettings, make_run_settings, read_run_toml

__all__ = ["RunSettings", "make_run_settings", "read_run_toml", "run_pipeline"]


def __getattr__(name: str):  # run_pipeline loads pandas and the models' code: import lazily
    if name == "run_pipeline":
        from tcdesign.pipeline.run import run_pipeline

        return run_pipeline
    raise AttributeError(f"module 'tcdesign.pipeline' has no attribute {name!r}")
