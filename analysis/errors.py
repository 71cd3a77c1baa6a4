class OptionError(ValueError):
    """A bad analysis option (the message names the bad value and the valid ones)."""
