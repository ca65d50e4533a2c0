"""admission-cli: check, rules, explain. The check path imports no FastAPI, uvicorn or kubernetes client."""
