# Makes the data folder a package so setuptools ships its *.yaml / *.json files.
