"""Errors of the model layer. Each message names the input and says how to fix it."""


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded (unknown id with no network, missing folder, bad files)."""


class OverBudgetError(MemoryError):
    """Loading a model would exceed the registry's memory budget."""


class PromptTooLong(ValueError):
    """The prompt does not fit the context window and the spec's policy is ``context_overflow='error'``."""
