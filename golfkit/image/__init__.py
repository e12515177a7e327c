"""The GPU image: its pinned versions and the docker command lines that build and run it.

`pins` reads docker/Dockerfile and docker/requirements-gpu.lock and compares them with a run's logged
versions; `docker` is `python -m golfkit.image.docker build|run|shell`, which `nox -s docker` calls.
"""
