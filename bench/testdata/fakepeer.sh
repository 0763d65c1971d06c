# A stand-in for the peer scripts of bench/peers, run as
# `sh fakepeer.sh DIR --workers W,... --variant V,... --epochs E --repeats R [--samples DIR]`
# under the script name of a peer (dali_peer.py, ...). It prints their JSON
# lines with made-up figures: BASE*max(W,1) + 10*(variant index) + repeat
# images/s at 0.9 cores per worker, BASE 100 (dali), 150 (tfdata), 120
# (torchvision); the cache variant 1000 images/s.
dir=$1; shift
workers=1; repeats=1; epochs=1; variants=x
while [ $# -gt 0 ]; do
	case $1 in
	--workers) workers=$2; shift ;;
	--repeats) repeats=$2; shift ;;
	--epochs) epochs=$2; shift ;;
	--variant) variants=$2; shift ;;
	esac
	shift
done
case $(basename "$0") in
dali_peer.py) system=dali; base=100 ;;
tfdata_peer.py) system=tfdata; base=150 ;;
*) system=torchvision; base=120 ;;
esac
echo "a line that is not JSON"
vi=0
for v in $(echo "$variants" | tr ',' ' '); do
	for w in $(echo "$workers" | tr ',' ' '); do
		r=0
		while [ $r -lt "$repeats" ]; do
			n=$w; [ "$n" -lt 1 ] && n=1
			ips=$((base * n + 10 * vi + r))
			[ "$v" = cache ] && ips=$((1000 + r))
			cpu=$(echo "$n" | awk '{print 0.9 * $1}')
			echo "{\"system\": \"$system\", \"variant\": \"$v\", \"mode\": \"train\", \"workers\": $w, \"images\": 64, \"seconds\": 1.0, \"images_per_s\": $ips, \"cpu_seconds\": $cpu, \"cpu_cores\": $cpu, \"epochs\": $epochs, \"repeat\": $r, \"versions\": {\"$system\": \"fake\", \"python\": \"3\"}}"
			r=$((r + 1))
		done
	done
	vi=$((vi + 1))
done
