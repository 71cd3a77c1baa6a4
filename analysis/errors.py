class OptionError(ValueError):
    """A bad analysis option (the message names the bad value and the valid ones)."""


class MixedDesigns(ValueError):
    """Cells of one design differ in more than the seed and runtime-only keys (the message names every key)."""
