# FROM and COPY --from images need a version too; a stage name is not an image.
# expect: stage 1 line=4
# expect: stage 1 line=6
FROM golang:alpine AS build
RUN true
COPY --from=gcr.io/distroless/static:nonroot /etc/passwd /etc/passwd
FROM python:3.12-slim
COPY --from=build /etc/hostname /x
USER 10001
