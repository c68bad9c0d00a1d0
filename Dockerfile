FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PRM_VAR_DIR=/app/var
WORKDIR /app
COPY pyproject.toml README.md ./
COPY . .
RUN pip install --no-cache-dir .
RUN useradd --create-home prm && mkdir -p /app/var && chown -R prm /app/var
USER prm
EXPOSE 8000
