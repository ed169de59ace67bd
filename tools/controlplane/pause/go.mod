module secrets-operator.local/node/pause

go 1.25.0
