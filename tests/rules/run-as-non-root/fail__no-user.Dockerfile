# expect: stage 1 line=4
FROM golang:1.23 AS build
RUN go build -o /app .
FROM debian:12.7-slim
COPY --from=build /app /app
