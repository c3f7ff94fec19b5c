"""The "Start here" workspace: the loop in five steps."""
