"""Errors of the model layer. Each message names the input and says how to fix it."""


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded (unknown id with no network, missing folder, bad files)."""


class OverBudgetError(MemoryError):
    """Loading a model would exceed the registry's memory budget."""


class PromptTooLong(ValueError):
    """The prompt does not fit the context window and the spec's policy is ``context_overflow='error'``."""


class ModelBusy(RuntimeError):
    """A model cannot be unloaded: callers hold it, or rows are still queued or decoding on it."""


class ModelUnloaded(RuntimeError):
    """A request reached a model that was unloaded (closed) meanwhile."""


class GenerationError(RuntimeError):
    """A request failed inside the model (its grammar did not compile, or a decode step raised)."""


class RemoteModelError(RuntimeError):
    """A remote engine failed a request (timeout, server error, retries spent); names the URL."""


class RemoteModelUnavailable(RemoteModelError, ModelLoadError):
    """A remote engine cannot serve this spec at all: connection refused, 401/403, unknown model (404)."""
