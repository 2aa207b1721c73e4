FROM python:3.11-slim
WORKDIR /srv/tuneforge
COPY . .
RUN bash scripts/install.sh
ENV TUNEFORGE_DATA_DIR=/data
EXPOSE 8000
CMD ["tuneforge", "api", "--host", "0.0.0.0"]
