# The base image is a build arg with no value: its user is unknown, and nothing here sets one.
# expect: stage 0 line=4
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY app /app
