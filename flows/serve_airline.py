"""MLflow models-from-code entry of the airline pyfunc (flows/forecasting.py): MLflow runs
this file to build the model, so nothing is unpickled."""

from mlflow.models import set_model

from flows.forecasting import Forecaster

set_model(Forecaster())
