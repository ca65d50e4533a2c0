"""The validating admission webhook (`admission-cli serve`): FastAPI, imported only by `serve`."""
