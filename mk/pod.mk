# The image and the pod tier (docs/image.md). Included by the top-level Makefile.

POD_IMAGE ?= streamproxy:dev

.PHONY: image image-lint pod-test

## image: build the streamproxy image ($(POD_IMAGE)) with the default base
image:
	DOCKER_BUILDKIT=1 docker build -t $(POD_IMAGE) .

## image-lint: hadolint the Dockerfiles
image-lint:
	scripts/image-lint.sh

## pod-test: build the image and run the chart's pod in a container engine (starts one as root)
pod-test:
	STREAMPROXY_POD_IMAGE=$(POD_IMAGE) scripts/pod-test.sh
