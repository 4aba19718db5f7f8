module vigil.local/loadgen

go 1.22
