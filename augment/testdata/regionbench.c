// regionbench measures libjpeg-turbo decode paths for random_resized_crop
// crops (CPU time, one thread). Not part of the build (testdata/):
//   gcc -O2 -o /tmp/rb testdata/regionbench.c -ljpeg -lm && /tmp/rb
// It reads every 5th JPEG of /data/photoset (400 files).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <jpeglib.h>
#include <dirent.h>
typedef struct { unsigned char *b; unsigned long n; } file;
static double now(void){struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID,&t); return t.tv_sec+t.tv_nsec*1e-9;}
static unsigned char *buf;
// crop: rrc-like: returns y0,y1,x0,x1
static void crop(int w,int h,int*x0,int*y0,int*cw,int*ch){
  for(int k=0;k<10;k++){double a=w*(double)h*(0.08+0.92*drand48()); double r=exp(log(0.75)+(log(1.3333)-log(0.75))*drand48());
    int ww=(int)lround(sqrt(a*r)), hh=(int)lround(sqrt(a/r)); if(ww>0&&ww<=w&&hh>0&&hh<=h){*x0=(int)(drand48()*(w-ww+1));*y0=(int)(drand48()*(h-hh+1));*cw=ww;*ch=hh;return;}}
  *x0=0;*y0=0;*cw=w;*ch=h;}
static void run(file*f,int mode){
  struct jpeg_decompress_struct d; struct jpeg_error_mgr e; d.err=jpeg_std_error(&e); jpeg_create_decompress(&d);
  jpeg_mem_src(&d,f->b,f->n); jpeg_read_header(&d,TRUE);
  int x0,y0,cw,ch; crop(d.image_width,d.image_height,&x0,&y0,&cw,&ch);
  if(mode<=1){ d.raw_data_out=TRUE; jpeg_start_decompress(&d);
    int lines=d.max_v_samp_factor*8; int stop=mode==1? (y0+ch+2+lines-1)/lines : 1<<30;
    JSAMPROW rows[3][32]; JSAMPARRAY arr[3]={rows[0],rows[1],rows[2]};
    for(int c=0;c<3;c++)for(int i=0;i<32;i++)rows[c][i]=buf;
    int k=0; while(d.output_scanline<d.output_height && k<stop){ jpeg_read_raw_data(&d,arr,lines); k++; }
  } else { d.out_color_space=JCS_YCbCr; jpeg_start_decompress(&d);
    JDIMENSION xo=x0, ww=cw; if(mode==3){ jpeg_crop_scanline(&d,&xo,&ww); if(y0>0) jpeg_skip_scanlines(&d,y0);} 
    JSAMPROW r=buf; unsigned end = mode==3? y0+ch : d.output_height;
    while(d.output_scanline<end) jpeg_read_scanlines(&d,&r,1);
  }
  jpeg_abort_decompress(&d); jpeg_destroy_decompress(&d);
}
int main(int argc,char**argv){
  buf=malloc(1<<24); file fs[400]; int n=0; char path[4096];
  FILE*l=popen("find /data/photoset -name '*.jpg' | sort | awk 'NR%5==0' | head -400","r");
  while(n<400 && fgets(path,sizeof path,l)){ path[strcspn(path,"\n")]=0; FILE*f=fopen(path,"rb"); fseek(f,0,2); long s=ftell(f); fseek(f,0,0); fs[n].b=malloc(s); fread(fs[n].b,1,s,f); fs[n].n=s; fclose(f); n++; }
  { // How often could DCT scaling (1/2) serve a 224 crop without upscaling?
    long ok=0, tot=0; srand48(1);
    for(int it=0;it<10;it++) for(int i=0;i<n;i++){
      struct jpeg_decompress_struct d; struct jpeg_error_mgr e; d.err=jpeg_std_error(&e); jpeg_create_decompress(&d);
      jpeg_mem_src(&d,fs[i].b,fs[i].n); jpeg_read_header(&d,TRUE);
      int x0,y0,cw,ch; crop(d.image_width,d.image_height,&x0,&y0,&cw,&ch);
      ok += cw>=448 && ch>=448; tot++; jpeg_destroy_decompress(&d); }
    printf("crops allowing 1/2 DCT scaling: %.2f%%\n", 100.0*ok/tot);
  }
  const char*names[]={"raw planes, full","raw planes, stop after crop rows","YCbCr scanlines (upsampled), full","YCbCr scanlines, crop_scanline+skip_scanlines"};
  for(int rep=0;rep<2;rep++) for(int m=0;m<4;m++){ srand48(1); double t=now(); for(int it=0;it<3;it++) for(int i=0;i<n;i++) run(&fs[i],m); t=now()-t; printf("%-50s %.0f images/cpu-s\n",names[m],3*n/t); }
}
