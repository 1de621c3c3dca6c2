class BridgeError(Exception):
    """An error the user can cause or fix: printed as one line, exit code 2."""

    exit_code = 2
