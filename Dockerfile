# Vigil on Node 24 LTS (the same major the scripts bootstrap). The Temporal dev server is not
# in the image: point TEMPORAL_ADDRESS at a Temporal service (see docker-compose.yml).
FROM node:24-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm install --omit=dev --no-audit --no-fund && npm cache clean --force
COPY bin ./bin
COPY config ./config
COPY rulesets ./rulesets
COPY integrations ./integrations
COPY storage ./storage
COPY decisions ./decisions
COPY workflows ./workflows
COPY activities ./activities
COPY proxy ./proxy
COPY cli ./cli
COPY examples ./examples
ENV NODE_ENV=production VIGIL_HOST=0.0.0.0 VIGIL_DATA_DIR=/data
VOLUME /data
USER node
EXPOSE 8080 8081
ENTRYPOINT ["node", "bin/vigil.mjs"]
CMD ["start"]
