# A stand-in for torchvision_baseline.py, run as `sh fakepeer.sh DIR --workers W,... --epochs E --repeats R`.
# It prints the script's JSON lines with made-up figures: 100*(W+1)+repeat images/s.
dir=$1; shift
workers=0; repeats=1; epochs=1
while [ $# -gt 0 ]; do
	case $1 in
	--workers) workers=$2; shift ;;
	--repeats) repeats=$2; shift ;;
	--epochs) epochs=$2; shift ;;
	esac
	shift
done
echo "a line that is not JSON"
for w in $(echo "$workers" | tr ',' ' '); do
	r=0
	while [ $r -lt "$repeats" ]; do
		ips=$((100 * (w + 1) + r))
		echo "{\"system\": \"torchvision\", \"mode\": \"train-transform\", \"workers\": $w, \"images\": 64, \"seconds\": 0.5, \"images_per_s\": $ips, \"epochs\": $epochs, \"repeat\": $r, \"torch\": \"fake\", \"torchvision\": \"fake\", \"pillow\": \"fake\", \"torch_threads\": 2}"
		r=$((r + 1))
	done
done
