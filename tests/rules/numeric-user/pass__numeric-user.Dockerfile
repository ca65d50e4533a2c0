FROM python:3.12-slim
RUN useradd -m -u 1001 appuser
USER 1001:1001
