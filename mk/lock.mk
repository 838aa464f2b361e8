# Locked dependencies (scripts/lock.sh). Included by the top-level Makefile.

.PHONY: lock lock-upgrade

# A changed lock reinstalls the venv, as a changed pyproject.toml does.
$(VENV)/.installed: requirements/dev.txt requirements/build.txt

## lock: re-resolve uv.lock and requirements/*.txt after editing pyproject.toml's dependencies
lock:
	scripts/lock.sh

## lock-upgrade: the same, moving every package to the newest version pyproject.toml allows
lock-upgrade:
	scripts/lock.sh --upgrade
