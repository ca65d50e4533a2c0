# expect: stage 0 line=4
FROM python:3.12-slim
RUN useradd -m appuser
USER appuser
