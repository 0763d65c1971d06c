#!/bin/sh
# A stand-in for the Python interpreter of bench's Python client rows, run
# as `fakepython.sh pyclient.py --addr A ... --client C`: it prints what
# pyclient.py prints, with made-up figures for clients pyarrow and loaderd,
# and the error of a client that cannot run for dataset.
client=
while [ $# -gt 0 ]; do
	[ "$1" = --client ] && client=$2
	shift
done
case $client in
pyarrow) echo '{"client":"pyarrow","images_per_sec":[1000,1100],"gb_per_sec":[0.15,0.17],"cpu_s_per_gb":[0.8,0.9],"images":12,"bytes":1806336,"versions":{"pyarrow":"21.0.0"}}' ;;
loaderd) echo 'a line that is not JSON'; echo '{"client":"loaderd","images_per_sec":[2000,2200],"gb_per_sec":[0.30,0.33],"cpu_s_per_gb":[0.3,0.4],"images":12,"bytes":1806336,"versions":{"loaderd":"0.1.0"}}' ;;
*) echo '{"error":"torch not importable by fakepython"}'; exit 3 ;;
esac
