FROM golang:1.23.2 AS build
RUN true
FROM scratch AS final
COPY --from=build /etc/hostname /x
USER 65532
