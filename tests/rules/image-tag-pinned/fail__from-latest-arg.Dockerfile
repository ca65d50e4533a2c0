# expect: stage 2 line=4
# expect: stage 2 line=5
ARG BASE=latest
FROM alpine:${BASE} AS deps
FROM node
FROM deps
USER 1000
