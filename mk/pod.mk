# The image and the pod tier (docs/image.md). Included by the top-level Makefile.

POD_IMAGE ?= streamproxy:dev

.PHONY: image image-lint pod-test

## image: build the streamproxy image ($(POD_IMAGE)); offline base when no registry answers
image:
	scripts/image-build.sh $(POD_IMAGE)

## image-lint: hadolint the Dockerfiles
image-lint:
	scripts/image-lint.sh

## pod-test: build the image and run the chart's pod in a container engine (starts one as root)
pod-test:
	STREAMPROXY_POD_IMAGE=$(POD_IMAGE) scripts/pod-test.sh
