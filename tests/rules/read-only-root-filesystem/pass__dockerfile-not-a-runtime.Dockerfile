# A Dockerfile says nothing about how its container runs: the rule does not apply.
FROM python:3.12.11-slim-bookworm
USER 10001
