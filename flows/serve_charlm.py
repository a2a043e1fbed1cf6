"""MLflow models-from-code entry of the charlm pyfunc (flows/writer.py): MLflow runs this
file to build the model, so nothing is unpickled."""

from mlflow.models import set_model

from flows.writer import Writer

set_model(Writer())
